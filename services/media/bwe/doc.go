// Package bwe is a send-side bandwidth estimator for one player (one peer
// connection) of the edge, in the GCC family (draft-ietf-rmcat-gcc).
//
// The edge numbers every packet it sends to a player with a transport-wide
// sequence number and calls [Estimator.Sent]; the player answers with
// transport-cc feedback (RTPFB FMT 15), given to [Estimator.Feedback] (pion's
// parsed packet) or [Estimator.FeedbackRTCP] (raw RTCP, parsed without
// allocating). From it the estimator runs:
//
//   - a delay-based controller: packets are grouped in 5 ms send bursts, the
//     inter-group delay variation is accumulated and smoothed, a trendline
//     (linear regression over the last 20 groups) gives the queueing delay
//     trend, an overuse detector with an adaptive threshold turns it into
//     overuse / normal / underuse, and an AIMD controller driven by the
//     acknowledged (received) bitrate sets the delay-based rate;
//   - a loss-based cap: above 10 % loss it cuts by half the loss ratio, below
//     2 % it grows 8 % a second, in between it holds (so 5 % random loss holds
//     the rate rather than collapsing it);
//   - probing: when congestion is clear and the estimate is below what the
//     sender wants ([Estimator.SetDesired], by default Config.Max),
//     [Estimator.ProbeRate] asks the sender for extra padding/RTX for a 100 ms
//     cluster (longer at low rates, for ~15 packets) at 10 % above what is
//     wanted, at least 1.2 and at most 2 times the estimate; the
//     cluster's acknowledged rate raises the estimate, and a successful cluster
//     is followed by the next one at once. Probes start with the first
//     feedback, 1.5 s after a cut, and every 3-5 s while below what is wanted.
//     The queue a probe overshooting a full link leaves does not cut the
//     estimate below its rate before the probe; a probe that finds the link
//     full below the estimate lowers it to what it measured.
//
// Players that send only REMB are served by [Estimator.REMB] with the loss
// cap fed by [Estimator.ReceiverReport]. [Estimator.Estimate] is min(delay
// based or REMB, loss cap) clamped to [Config.Min, Config.Max].
//
// All rates are bits per second, all times unix nanoseconds (any monotonic
// nanosecond clock works: only differences are used). Tests drive the
// estimator with a simulated bottleneck link, never the wall clock.
package bwe
