package errcode

import (
	"context"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestCodeSurvivesStatusRoundTrip(t *testing.T) {
	tests := []struct {
		code Code
		grpc codes.Code
	}{
		{LoginAuthFailed, codes.Unauthenticated},
		{StreamIDExists, codes.AlreadyExists},
		{StreamNotFound, codes.NotFound},
		{Code(42), codes.Unknown},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.code), func(t *testing.T) {
			err := New(tt.code, "it failed")
			st := status.Convert(err)
			if st.Code() != tt.grpc {
				t.Errorf("grpc code = %v, want %v", st.Code(), tt.grpc)
			}
			// What a client sees is a fresh status built from the wire proto.
			wire := status.FromProto(st.Proto()).Err()
			if got := Of(wire); got != tt.code {
				t.Errorf("Of(wire) = %d, want %d", got, tt.code)
			}
			if got := Message(wire); got != "it failed" {
				t.Errorf("Message = %q", got)
			}
		})
	}
}

func TestOfWithoutCode(t *testing.T) {
	if Of(nil) != OK {
		t.Error("nil error has a code")
	}
	if Of(status.Error(codes.Internal, "x")) != 0 {
		t.Error("plain status has a code")
	}
	if Of(fmt.Errorf("wrapped: %w", New(NoToken, "no token"))) != NoToken {
		t.Error("wrapped *Error lost its code")
	}
}

func TestUnavailable(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want Code
	}{
		{"store failure", fmt.Errorf("etcdserver: request timed out"), ServiceUnavailable},
		{"keeps a code", New(StreamIDExists, "taken"), StreamIDExists},
		{"nil", nil, OK},
	}
	for _, tt := range tests {
		if got := Of(Unavailable(tt.err)); got != tt.want {
			t.Errorf("%s: code %d, want %d", tt.name, got, tt.want)
		}
	}
	if err := Unavailable(context.Canceled); err != context.Canceled {
		t.Errorf("cancellation became %v", err)
	}
}
