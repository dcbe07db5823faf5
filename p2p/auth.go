package p2p

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// MaxAuthLifetime is how far in the future an auth token may expire.
const MaxAuthLifetime = 24 * time.Hour

// SignAuth issues the auth token that lets from open a session with devID.
// The cloud does this in production; the reference client and tests do it
// from the P2P password.
func SignAuth(password, devID, from string, expires int64) string {
	return strconv.FormatInt(expires, 10) + "." + authSig(password, devID, from, expires)
}

func authSig(password, devID, from string, expires int64) string {
	mac := hmac.New(sha256.New, []byte(password))
	mac.Write([]byte("302|" + devID + "|" + from + "|" + strconv.FormatInt(expires, 10)))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// VerifyAuth checks a token against the P2P password. The error says why it
// was refused and wraps ErrAuthMalformed, ErrAuthExpired or ErrAuthMismatch.
func VerifyAuth(token, password, devID, from string, now time.Time) error {
	exp, sig, ok := strings.Cut(token, ".")
	if !ok || exp == "" || sig == "" {
		return fmt.Errorf("%w: want <expires>.<sig>", ErrAuthMalformed)
	}
	expires, err := strconv.ParseInt(exp, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: expires is not an integer", ErrAuthMalformed)
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || len(got) != sha256.Size {
		return fmt.Errorf("%w: sig is not base64url of 32 bytes", ErrAuthMalformed)
	}
	n := now.Unix()
	if expires < n {
		return fmt.Errorf("%w: expired %ds ago", ErrAuthExpired, n-expires)
	}
	if expires > n+int64(MaxAuthLifetime/time.Second) {
		return fmt.Errorf("%w: expires more than %s ahead", ErrAuthExpired, MaxAuthLifetime)
	}
	want, _ := base64.RawURLEncoding.DecodeString(authSig(password, devID, from, expires))
	if !hmac.Equal(got, want) {
		return fmt.Errorf("%w: signature does not match", ErrAuthMismatch)
	}
	return nil
}
