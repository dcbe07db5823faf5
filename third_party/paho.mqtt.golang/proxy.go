/*
 * This program and the accompanying materials
 * are made available under the terms of the Eclipse Public License v2.0
 * and Eclipse Distribution License v1.0 which accompany this distribution.
 *
 * The Eclipse Public License is available at
 *    https://www.eclipse.org/legal/epl-2.0/
 * and the Eclipse Distribution License is available at
 *   http://www.eclipse.org/org/documents/edl-v10.php.
 *
 * Contributors:
 */

package mqtt

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"net"
	"net/url"

	"golang.org/x/net/proxy"
)

// http:// proxies (HTTP CONNECT) for every transport, as ALL_PROXY or a
// WebsocketOptions.Proxy; golang.org/x/net/proxy knows socks5 only.
func init() {
	proxy.RegisterDialerType("http", func(u *url.URL, forward proxy.Dialer) (proxy.Dialer, error) {
		return &connectDialer{proxy: u, forward: forward}, nil
	})
}

type connectDialer struct {
	proxy   *url.URL
	forward proxy.Dialer
}

// Dial opens a tunnel to addr through the proxy with CONNECT.
func (d *connectDialer) Dial(network, addr string) (net.Conn, error) {
	host := d.proxy.Host
	if d.proxy.Port() == "" {
		host = net.JoinHostPort(d.proxy.Hostname(), "80")
	}
	conn, err := d.forward.Dial(network, host)
	if err != nil {
		return nil, err
	}
	req := "CONNECT " + addr + " HTTP/1.1\r\nHost: " + addr + "\r\n"
	if u := d.proxy.User; u != nil {
		pass, _ := u.Password()
		req += "Proxy-Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(u.Username()+":"+pass)) + "\r\n"
	}
	if _, err := conn.Write([]byte(req + "\r\n")); err != nil {
		_ = conn.Close()
		return nil, err
	}
	br := bufio.NewReaderSize(conn, wsMinReadBuffer)
	status, _, err := readHTTPHead(br)
	if err == nil {
		if code, ok := httpStatus(status); !ok || code != "200" {
			err = fmt.Errorf("proxy %s answered CONNECT with %q", d.proxy.Redacted(), status)
		}
	}
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	if br.Buffered() == 0 {
		return conn, nil
	}
	return &bufferedConn{Conn: conn, r: br}, nil
}

// bufferedConn reads what the proxy sent after its answer before reading
// the connection again.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }
