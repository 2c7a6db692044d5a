package gateway_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/onair-dev/onair/errcode"
)

// The gRPC side of the access test (access_test.go): every method on the
// public listener has a class.

// grpcMethods classifies every RPC on the public gRPC listener, where a
// client may call what the gateway does not route.
var grpcMethods = map[string]accessClass{
	"/grpc.health.v1.Health/Check":                                   classOpen,
	"/grpc.health.v1.Health/List":                                    classOpen,
	"/grpc.health.v1.Health/Watch":                                   classOpen,
	"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo":      classOpen,
	"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": classOpen,
	"/onair.auth.v1.AuthService/CreateApp":                           classAdmin,
	"/onair.auth.v1.AuthService/GetApp":                              classAdmin,
	"/onair.auth.v1.AuthService/UpdateApp":                           classAdmin,
	"/onair.auth.v1.AuthService/EnableService":                       classAdmin,
	"/onair.auth.v1.AuthService/IssueDebugToken":                     classAdmin,
	"/onair.auth.v1.AuthService/VerifyToken":                         classOpen,
	"/onair.auth.v1.AuthService/VerifyServerSignature":               classInternal,
	"/onair.room.v1.RoomService/LoginRoom":                           classOpen,
	"/onair.room.v1.RoomService/LogoutRoom":                          classClient,
	"/onair.room.v1.RoomService/Heartbeat":                           classClient,
	"/onair.room.v1.RoomService/RenewToken":                          classClient,
	"/onair.room.v1.RoomService/SubscribeRoomEvents":                 classClient,
	"/onair.room.v1.RoomService/SetRoomExtraInfo":                    classClient,
	"/onair.room.v1.RoomService/SendRoomMessage":                     classClient,
	"/onair.room.v1.RoomService/SendRoomMessages":                    classClient,
	"/onair.room.v1.RoomService/ListUsers":                           classClient,
	"/onair.room.v1.RoomService/ListStreams":                         classClient,
	"/onair.room.v1.RoomService/SetStreamExtraInfo":                  classClient,
	"/onair.room.v1.RoomServerService/KickUser":                      classServer,
	"/onair.room.v1.RoomServerService/CloseRoom":                     classServer,
	"/onair.room.v1.RoomServerService/DescribeUsers":                 classServer,
	"/onair.room.v1.RoomServerService/DescribeStreams":               classServer,
	"/onair.room.v1.RoomServerService/DeleteStream":                  classServer,
	"/onair.room.v1.RoomServerService/ListFailedCallbacks":           classServer,
	"/onair.stream.v1.StreamService/RegisterStream":                  classInternal,
	"/onair.stream.v1.StreamService/UnregisterStream":                classInternal,
	"/onair.stream.v1.StreamService/GetStream":                       classInternal,
	"/onair.stream.v1.StreamService/ListStreams":                     classInternal,
	"/onair.stream.v1.StreamService/SetStreamExtraInfo":              classInternal,
	"/onair.stream.v1.StreamService/WatchStreams":                    classInternal,
	"/onair.media.v1.MediaService/Publish":                           classOpen,
	"/onair.media.v1.MediaService/Play":                              classOpen,
	"/onair.media.v1.MediaService/Stop":                              classClient,
	"/onair.media.v1.MediaService/WatchSession":                      classClient,
	"/onair.media.v1.MediaRelayService/Relay":                        classInternal,
}

// Every method on the public gRPC listener has a class, and a client with no
// credential (no internal or admin key, no session, no signature) is refused
// by every method but the open ones, with a vendor code. Open methods with a
// token are checked over REST, which calls the same code.
func TestEveryRPCHasAClass(t *testing.T) {
	f := newAccessFixture(t)
	cc, err := grpc.NewClient(f.n.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	// What the listener serves, as a client sees it: through reflection.
	refl, err := reflectionpb.NewServerReflectionClient(cc).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := refl.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	listed, err := refl.Recv()
	if err != nil {
		t.Fatal(err)
	}
	_ = refl.CloseSend()
	var methods []protoreflect.MethodDescriptor
	for _, svc := range listed.GetListServicesResponse().GetService() {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc.GetName()))
		if err != nil {
			t.Errorf("service %s: %v", svc.GetName(), err)
			continue
		}
		sd := d.(protoreflect.ServiceDescriptor)
		for i := range sd.Methods().Len() {
			methods = append(methods, sd.Methods().Get(i))
		}
	}
	if len(methods) < len(grpcMethods)/2 {
		t.Fatalf("reflection lists only %d methods", len(methods))
	}
	for _, m := range methods {
		name := fmt.Sprintf("/%s/%s", m.Parent().FullName(), m.Name())
		class, ok := grpcMethods[name]
		if !ok {
			t.Errorf("method %s has no access class: add it to grpcMethods", name)
			continue
		}
		if class == classOpen {
			continue
		}
		err := invokeEmpty(ctx, cc, name, m)
		st := status.Convert(err)
		if st.Code() != codes.PermissionDenied && st.Code() != codes.Unauthenticated {
			t.Errorf("%s (%s) without a credential: %v, want PermissionDenied or Unauthenticated", name, class, err)
			continue
		}
		code := errcode.FromStatus(st)
		if code == 0 {
			t.Errorf("%s (%s): refused without a vendor code: %v", name, class, err)
		}
		if class == classInternal && code != errcode.InternalOnly {
			t.Errorf("%s (internal): code %d, want %d", name, code, errcode.InternalOnly)
		}
	}
}

// invokeEmpty calls m with an empty request and returns its error (the
// first receive's, for a server stream).
func invokeEmpty(ctx context.Context, cc *grpc.ClientConn, name string, m protoreflect.MethodDescriptor) error {
	req := dynamicpb.NewMessage(m.Input())
	if !m.IsStreamingServer() && !m.IsStreamingClient() {
		return cc.Invoke(ctx, name, req, dynamicpb.NewMessage(m.Output()))
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := cc.NewStream(sctx, &grpc.StreamDesc{ServerStreams: m.IsStreamingServer(), ClientStreams: m.IsStreamingClient()}, name)
	if err != nil {
		return err
	}
	if err := s.SendMsg(req); err != nil {
		return err
	}
	if err := s.CloseSend(); err != nil {
		return err
	}
	out := dynamicpb.NewMessage(m.Output())
	if err := s.RecvMsg(out); err != nil {
		return err
	}
	// A stream that answers each request (SendRoomMessages) refuses one
	// in its answer: a serialized google.rpc.Status in a "status" field.
	if f := m.Output().Fields().ByName("status"); f != nil && f.Kind() == protoreflect.BytesKind {
		if b := out.Get(f).Bytes(); len(b) > 0 {
			st := new(spb.Status)
			if err := proto.Unmarshal(b, st); err != nil {
				return err
			}
			return status.ErrorProto(st)
		}
	}
	return nil
}
