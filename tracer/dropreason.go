package tracer

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cilium/ebpf/btf"
)

// dropReasons maps the running kernel's enum skb_drop_reason values to their names without
// the SKB_DROP_REASON_ prefix, read from the kernel's own BTF: the kernel adds and
// renumbers reasons between versions, so a copied table would lie. It is empty on a kernel
// without the enum (before Linux 5.17): its drops carry no reason.
type dropReasons map[uint32]string

func loadDropReasons(kernel *btf.Spec) (dropReasons, error) {
	var enum *btf.Enum
	err := kernel.TypeByName("skb_drop_reason", &enum)
	if errors.Is(err, btf.ErrNotFound) {
		return dropReasons{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("find enum skb_drop_reason in kernel BTF: %w", err)
	}
	reasons := make(dropReasons, len(enum.Values))
	for _, v := range enum.Values {
		reasons[uint32(v.Value)] = strings.TrimPrefix(v.Name, "SKB_DROP_REASON_")
	}
	return reasons, nil
}

// value returns the enum value of a reason name, or ^0 (never a reason) when the kernel
// does not have it.
func (r dropReasons) value(name string) uint32 {
	for v, n := range r {
		if n == name {
			return v
		}
	}
	return ^uint32(0)
}

// name returns the reason's name; an unknown value (a kernel subsystem's own reason
// range) is shown as a number. A kernel without reasons gives none.
func (r dropReasons) name(v uint32) string {
	if len(r) == 0 {
		return ""
	}
	if n, ok := r[v]; ok {
		return n
	}
	return fmt.Sprintf("REASON_%d", v)
}

// inferredReason names a reason the BPF side inferred (enum dt_inferred_reason) as the
// kernels that have reasons name it.
func inferredReason(v uint32) string {
	switch discotraceDtInferredReason(v) {
	case discotraceDtInferredReasonDT_INFERRED_SOCKET_RCVBUFF:
		return "SOCKET_RCVBUFF"
	case discotraceDtInferredReasonDT_INFERRED_PROTO_MEM:
		return "PROTO_MEM"
	}
	return fmt.Sprintf("INFERRED_%d", v)
}
