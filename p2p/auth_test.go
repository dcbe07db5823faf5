package p2p

import (
	"errors"
	"strconv"
	"testing"
	"time"
)

func TestVerifyAuth(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	good := SignAuth("ad12ab34", "dev1", "app1", now.Unix()+3600)
	tests := []struct {
		name  string
		token string
		from  string
		want  error
	}{
		{"valid", good, "app1", nil},
		{"expires now", SignAuth("ad12ab34", "dev1", "app1", now.Unix()), "app1", nil},
		{"another from", good, "app2", ErrAuthMismatch},
		{"wrong password", SignAuth("ad99", "dev1", "app1", now.Unix()+3600), "app1", ErrAuthMismatch},
		{"another device", SignAuth("ad12ab34", "dev2", "app1", now.Unix()+3600), "app1", ErrAuthMismatch},
		{"expired", SignAuth("ad12ab34", "dev1", "app1", now.Unix()-1), "app1", ErrAuthExpired},
		{"too far ahead", SignAuth("ad12ab34", "dev1", "app1", now.Unix()+86401), "app1", ErrAuthExpired},
		{"empty", "", "app1", ErrAuthMalformed},
		{"no dot", "12345", "app1", ErrAuthMalformed},
		{"bad expires", "x." + good[len(strconv.FormatInt(now.Unix()+3600, 10))+1:], "app1", ErrAuthMalformed},
		{"bad base64", strconv.FormatInt(now.Unix()+60, 10) + ".!!!", "app1", ErrAuthMalformed},
		{"short sig", strconv.FormatInt(now.Unix()+60, 10) + ".AAAA", "app1", ErrAuthMalformed},
		{"expiry edited", strconv.FormatInt(now.Unix()+7200, 10) + good[len(strconv.FormatInt(now.Unix()+3600, 10)):], "app1", ErrAuthMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := VerifyAuth(tt.token, "ad12ab34", "dev1", tt.from, now)
			if tt.want == nil && err != nil {
				t.Fatalf("want ok, got %v", err)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("want %v, got %v", tt.want, err)
			}
		})
	}
}
