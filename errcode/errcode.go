// Package errcode defines the vendor's numeric error codes and carries them
// through gRPC status details and REST error bodies.
//
// A service returns an *Error; gRPC turns it into a status whose details hold
// a google.rpc.ErrorInfo with the code, and Of recovers the code on the other
// side of any number of hops.
package errcode

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Code is a vendor error code, such as 1002033.
type Code int32

// Domain is the ErrorInfo domain under which codes travel.
const Domain = "onair.dev"

// Vendor codes. The names follow express-facts.md.
const (
	OK Code = 0

	StreamIDTooLong    Code = 1000014
	StreamIDInvalid    Code = 1000016
	InvalidParameter   Code = 1000002
	TooManyRequests    Code = 1000015
	ServiceUnavailable Code = 1000037

	LoginTwice           Code = 1002001
	UserIDEmpty          Code = 1002005
	UserIDInvalid        Code = 1002006
	UserIDTooLong        Code = 1002007
	UserNameEmpty        Code = 1002008
	UserNameTooLong      Code = 1002010
	RoomIDEmpty          Code = 1002011
	RoomIDInvalid        Code = 1002012
	RoomIDTooLong        Code = 1002013
	ConnectFailed        Code = 1002030
	LoginTimeout         Code = 1002031
	LoginAuthFailed      Code = 1002033
	MemberLimit          Code = 1002034
	KickedSameUser       Code = 1002050
	ConnectionBroken     Code = 1002051
	Disconnected         Code = 1002052
	ReconnectGaveUp      Code = 1002053
	KickedByServer       Code = 1002055
	KickedTokenExpired   Code = 1002056
	NoToken              Code = 1002067
	TokenInternal        Code = 1002074
	TokenPayloadNotJSON  Code = 1002075
	TokenAppIDMismatch   Code = 1002076
	TokenUserIDMismatch  Code = 1002077
	TokenExpired         Code = 1002078
	TokenWrongVersion    Code = 1002079
	RoomInternal         Code = 1002099
	RoomExtraInfoTooLong Code = 1002081
	MessageTooLong       Code = 1002082
	SessionNotFound      Code = 1002083

	AlreadyPublishing      Code = 1003023
	PublishForbidden       Code = 1003025
	StreamIDExists         Code = 1003028
	StreamExtraInfoTooLong Code = 1003051
	PublishAuthError       Code = 1003072

	StreamNotFound Code = 1004002
	PlayAuthError  Code = 1004003
	TooManyPlays   Code = 1004010

	ServerSignatureInvalid Code = 1005001
	ServerTimestampSkew    Code = 1005002
	ServerNonceReplayed    Code = 1005003
	AppNotFound            Code = 1005004
	AdminOnly              Code = 1005005
	ServiceNotEnabled      Code = 1005006
	// InternalOnly refuses a call that only OnAir services may make (it
	// needs the internal key); a client or business server never can.
	InternalOnly Code = 1005007
)

// grpcCodes maps a vendor code to the gRPC code it travels under; codes not
// listed travel as codes.Unknown.
var grpcCodes = map[Code]codes.Code{
	StreamIDTooLong: codes.InvalidArgument, StreamIDInvalid: codes.InvalidArgument,
	InvalidParameter: codes.InvalidArgument, TooManyRequests: codes.ResourceExhausted,
	ServiceUnavailable: codes.Unavailable,
	LoginTwice:         codes.AlreadyExists,
	UserIDEmpty:        codes.InvalidArgument, UserIDInvalid: codes.InvalidArgument, UserIDTooLong: codes.InvalidArgument,
	UserNameEmpty: codes.InvalidArgument, UserNameTooLong: codes.InvalidArgument,
	RoomIDEmpty: codes.InvalidArgument, RoomIDInvalid: codes.InvalidArgument, RoomIDTooLong: codes.InvalidArgument,
	ConnectFailed: codes.Unavailable, LoginTimeout: codes.DeadlineExceeded,
	LoginAuthFailed: codes.Unauthenticated, MemberLimit: codes.ResourceExhausted,
	KickedSameUser: codes.Aborted, ConnectionBroken: codes.Unavailable, Disconnected: codes.Unavailable,
	ReconnectGaveUp: codes.Unavailable, KickedByServer: codes.Aborted, KickedTokenExpired: codes.Unauthenticated,
	NoToken: codes.Unauthenticated, TokenInternal: codes.Internal, TokenPayloadNotJSON: codes.Unauthenticated,
	TokenAppIDMismatch: codes.Unauthenticated, TokenUserIDMismatch: codes.Unauthenticated,
	TokenExpired: codes.Unauthenticated, TokenWrongVersion: codes.Unauthenticated,
	RoomInternal: codes.Internal, RoomExtraInfoTooLong: codes.InvalidArgument, MessageTooLong: codes.InvalidArgument,
	// A session ID is the client's credential: one that opens nothing is
	// refused as any other bad credential (HTTP 401), not "not found".
	SessionNotFound:   codes.Unauthenticated,
	AlreadyPublishing: codes.AlreadyExists, PublishForbidden: codes.PermissionDenied,
	StreamIDExists: codes.AlreadyExists, StreamExtraInfoTooLong: codes.InvalidArgument,
	PublishAuthError: codes.PermissionDenied,
	StreamNotFound:   codes.NotFound, PlayAuthError: codes.PermissionDenied, TooManyPlays: codes.ResourceExhausted,
	ServerSignatureInvalid: codes.Unauthenticated, ServerTimestampSkew: codes.Unauthenticated,
	ServerNonceReplayed: codes.Unauthenticated, AppNotFound: codes.NotFound, AdminOnly: codes.PermissionDenied,
	ServiceNotEnabled: codes.FailedPrecondition, InternalOnly: codes.PermissionDenied,
}

// GRPCCode is the gRPC status code that c travels under.
func (c Code) GRPCCode() codes.Code {
	if g, ok := grpcCodes[c]; ok {
		return g
	}
	return codes.Unknown
}

// Error is an error that carries a vendor code and a sentence a developer
// can act on.
type Error struct {
	Code    Code
	Message string
}

// New returns an *Error with the code and message.
func New(c Code, msg string) *Error { return &Error{Code: c, Message: msg} }

// Newf returns an *Error with the code and a formatted message.
func Newf(c Code, format string, args ...any) *Error {
	return &Error{Code: c, Message: fmt.Sprintf(format, args...)}
}

func (e *Error) Error() string { return fmt.Sprintf("%s (code %d)", e.Message, e.Code) }

// GRPCStatus lets grpc-go send e as a status with an ErrorInfo detail.
func (e *Error) GRPCStatus() *status.Status {
	st := status.New(e.Code.GRPCCode(), e.Message)
	withInfo, err := st.WithDetails(&errdetails.ErrorInfo{
		Reason:   strconv.Itoa(int(e.Code)),
		Domain:   Domain,
		Metadata: map[string]string{"code": strconv.Itoa(int(e.Code))},
	})
	if err != nil {
		return st
	}
	return withInfo
}

// Of returns the vendor code carried by err: from an *Error in its chain, or
// from the ErrorInfo of a gRPC status. It returns OK for nil and 0 when err
// carries no code.
func Of(err error) Code {
	if err == nil {
		return OK
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	if st, ok := status.FromError(err); ok {
		return FromStatus(st)
	}
	return 0
}

// FromStatus returns the vendor code in a status's ErrorInfo, or 0.
func FromStatus(st *status.Status) Code {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.Domain == Domain {
			if n, err := strconv.Atoi(info.Reason); err == nil {
				return Code(n)
			}
		}
	}
	return 0
}

// Message returns the human part of err: the *Error message or the status
// message.
func Message(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	if st, ok := status.FromError(err); ok {
		return st.Message()
	}
	return err.Error()
}

// Unavailable reports a failure of the store or a peer service as 1000037,
// so a client knows to retry. Cancellations stay as they are (the caller
// gave up), and an error that already carries a code keeps it.
func Unavailable(err error) error {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if Of(err) != 0 {
		return err
	}
	return Newf(ServiceUnavailable, "store unavailable: %v", err)
}
