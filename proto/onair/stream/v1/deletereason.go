package streamv1

import "encoding/json"

// DeleteReasonData is the vendor's extended data of a stream deletion,
// {"stream_delete_reason":[{"stream_id":"s","code":1}]}, one entry per
// stream, keys in that order: the one encoder of it, for the room service
// and the SDKs alike, so a client sees one byte form.
func DeleteReasonData(code DeleteReason, streamIDs ...string) string {
	type reason struct {
		StreamID string `json:"stream_id"`
		Code     int    `json:"code"`
	}
	v := struct {
		Reasons []reason `json:"stream_delete_reason"`
	}{make([]reason, len(streamIDs))}
	for i, id := range streamIDs {
		v.Reasons[i] = reason{id, int(code)}
	}
	b, _ := json.Marshal(v)
	return string(b)
}
