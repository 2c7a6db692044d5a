package grpcserver

import (
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"
)

// A stream of a Server sends a message encoded once, several times, and
// the client reads it as the message it is.
func TestSendEncoded(t *testing.T) {
	want := &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}
	wire, err := proto.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	s := New(Config{})
	s.RegisterService(&grpc.ServiceDesc{ServiceName: "test.Encoded", HandlerType: (*any)(nil),
		Streams: []grpc.StreamDesc{{StreamName: "Watch", ServerStreams: true, Handler: func(_ any, stream grpc.ServerStream) error {
			enc, ok := stream.(EncodedSender)
			if !ok {
				t.Errorf("stream %T is no EncodedSender", stream)
				return nil
			}
			for range 3 {
				if err := enc.SendEncoded(wire); err != nil {
					return err
				}
			}
			// Other messages still go through protobuf's codec.
			return stream.SendMsg(want)
		}}}}, nil)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Server.Serve(lis)
	t.Cleanup(s.Server.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	st, err := conn.NewStream(t.Context(), &grpc.StreamDesc{ServerStreams: true}, "/test.Encoded/Watch")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SendMsg(&healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		got := new(healthpb.HealthCheckResponse)
		if err := st.RecvMsg(got); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if !proto.Equal(got, want) {
			t.Errorf("message %d: %v, want %v", i, got, want)
		}
	}
}
