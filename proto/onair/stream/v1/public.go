package streamv1

// Public is what a client or business server may see of r: the public
// Stream, without the media edge, the lease or the end mark. Every stream
// that leaves OnAir through a public API goes through it.
func (r *StreamRecord) Public() *Stream {
	if r == nil {
		return nil
	}
	return &Stream{
		AppId: r.AppId, StreamId: r.StreamId, RoomId: r.RoomId, UserId: r.UserId,
		UserName: r.UserName, ExtraInfo: r.ExtraInfo, CreateTimeMs: r.CreateTimeMs,
	}
}

// PublicStreams is Public for each record.
func PublicStreams(rs []*StreamRecord) []*Stream {
	out := make([]*Stream, len(rs))
	for i, r := range rs {
		out[i] = r.Public()
	}
	return out
}
