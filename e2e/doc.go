// Package e2e is discotrace's end-to-end fault matrix: real go-ethereum discovery nodes
// (and a second, independent discv5 implementation) in network namespaces, faults injected
// with nft and sysctls, traced by the real `discotrace trace` binary, each scenario
// asserting the NDJSON events against what the nodes themselves reported.
//
// The tests need root, iproute2 and nftables and are built only with the e2e tag:
// `make e2e` (go test -tags e2e ./e2e/). A missing nft fails them; it does not skip them.
package e2e
