package mqtt

import (
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	in := `{"protocol":46,"t":1,"data":{"type":"activate","dev_id":"d1","local_key":"0123456789abcdef",` +
		`"p2p_password":"ad12ab34","mqtt":{"username":"u","password":"p\"w"},"sign":"c2ln","uid":"o"}}` +
		`{"msg":{"auth":"123.sig","token":[{"urls":"turn:x","credential" : "tc"}]}}`
	got := string(redact([]byte(in)))
	for _, secret := range []string{"0123456789abcdef", "ad12ab34", `p\"w`, "c2ln", "123.sig", "tc"} {
		if strings.Contains(got, secret) {
			t.Errorf("secret %q left in %s", secret, got)
		}
	}
	for _, keep := range []string{`"dev_id":"d1"`, `"username":"u"`, `"uid":"o"`, `"local_key":"***"`, `"credential" : "***"`} {
		if !strings.Contains(got, keep) {
			t.Errorf("%q missing from %s", keep, got)
		}
	}
}
