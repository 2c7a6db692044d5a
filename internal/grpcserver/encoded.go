package grpcserver

import (
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // the codec Encoded falls back on
	"google.golang.org/grpc/mem"
)

// Encoded is a message already in its wire encoding (protobuf), sent as it
// is: a room message goes to every receiver in the room, and encoding it
// once rather than once per receiver is a share of each delivery's cost.
//
// Only a Server's own streams can send one: they implement EncodedSender
// (a stream another interceptor wraps may not; send the message then).
type Encoded []byte

// EncodedSender is a server stream that sends Encoded messages.
type EncodedSender interface {
	// SendEncoded sends b, a message of the stream's type in its wire
	// encoding, as SendMsg would send the message.
	SendEncoded(b Encoded) error
}

// codec is protobuf's codec, except that Encoded is written as it is.
type codec struct{ proto encoding.CodecV2 }

func newCodec() codec { return codec{proto: encoding.GetCodecV2("proto")} }

// Marshal implements encoding.CodecV2.
func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	if b, ok := v.(Encoded); ok {
		// SliceBuffer's Free does nothing: b is shared by every receiver
		// and never goes back to a pool.
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	return c.proto.Marshal(v)
}

// Unmarshal implements encoding.CodecV2.
func (c codec) Unmarshal(data mem.BufferSlice, v any) error { return c.proto.Unmarshal(data, v) }

// Name implements encoding.CodecV2.
func (codec) Name() string { return "proto" }

// SendEncoded implements EncodedSender: the server's codec writes it.
func (s *markedStream) SendEncoded(b Encoded) error { return s.ServerStream.SendMsg(b) }

var _ EncodedSender = (*markedStream)(nil)

// codecOption makes the server's codec protobuf's with Encoded.
func codecOption() grpc.ServerOption { return grpc.ForceServerCodecV2(newCodec()) }
