// Package testkit is what OnAir's tests share, so each is written once:
// waiting until something a user would see holds (Eventually), negotiating
// a pion peer with an edge (Offer, and whipclient for WHIP/WHEP over HTTP),
// and writing down what an SDK client is told (Recorder). It depends on
// nothing of OnAir's servers, so any package's tests may use it.
package testkit
