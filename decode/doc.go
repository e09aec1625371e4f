// Package decode reconstructs discovery traffic: it turns observed records (package
// record, from the tracer or a capture) into results (package result): each record's
// observation with its decoded packet, and the discv4 exchanges, discv5 handshakes and
// anomalies they make up, with the root cause of each failure and the events it rests on.
//
// It is pure Go and never touches the kernel; the same input always gives the same
// output. Time is record time. The wire formats live in discv4 and discv5, capture files
// in capture, the live path's queue and shedding in live; state keyed by what the network
// sends is bounded by one policy, internal/bounded.
package decode
