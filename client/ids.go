package client

import "math/bits"

// idSpace hands out packet identifiers and finds a request by its
// identifier in O(1). An identifier is never 0 [MQTT-2.3.1-1] and never
// given to a second request while the first holds it [MQTT-2.3.1-2]; it is
// free again once the request's last acknowledgement came [MQTT-2.3.1-3].
// Identifiers are given in increasing order, wrapping from 65,535 to 1, so
// that a late acknowledgement of a request that was dropped finds no new
// request under its identifier for as long as possible.
//
// The outbox's lock guards it. Its map is made on first use: a client that
// has sent no request holds none.
type idSpace struct {
	used map[uint16]*request
}

// full reports whether all 65,535 identifiers are in use.
func (s *idSpace) full() bool { return len(s.used) == 65535 }

// take gives r the next free identifier. The space is not full.
// last is the identifier given before, kept by the caller.
func (s *idSpace) take(r *request, last *uint16) {
	if s.used == nil {
		s.used = make(map[uint16]*request)
	}
	for {
		*last++
		if *last == 0 {
			continue
		}
		if _, busy := s.used[*last]; !busy {
			break
		}
	}
	r.id = *last
	s.used[r.id] = r
}

// put records r under the identifier it already has (from a Store); it
// reports false when another request holds it.
func (s *idSpace) put(r *request, last *uint16) bool {
	if s.used == nil {
		s.used = make(map[uint16]*request)
	}
	if _, busy := s.used[r.id]; busy || r.id == 0 {
		return false
	}
	s.used[r.id] = r
	*last = max(*last, r.id)
	return true
}

// get returns the request holding id, or nil.
func (s *idSpace) get(id uint16) *request { return s.used[id] }

// free releases r's identifier, if r holds it.
func (s *idSpace) free(r *request) {
	if s.used[r.id] == r {
		delete(s.used, r.id)
	}
}

// len returns the number of identifiers in use.
func (s *idSpace) len() int { return len(s.used) }

// qos2Set holds the packet identifiers of received QoS 2 messages awaiting
// their PUBREL [MQTT-4.3.3-2]: a small map while there are few, a bitmap of
// 8 KiB beyond smallQoS2, so that a server that never releases its 65,535
// identifiers costs 8 KiB and no more. The core drops it when it empties
// from a map, so an idle client holds none.
type qos2Set struct {
	small map[uint16]struct{}
	bits  *[1024]uint64
}

// smallQoS2 is the most identifiers kept in the map.
const smallQoS2 = 256

func (s *qos2Set) has(id uint16) bool {
	if s.bits != nil {
		return s.bits[id>>6]&(1<<(id&63)) != 0
	}
	_, ok := s.small[id]
	return ok
}

func (s *qos2Set) add(id uint16) {
	if s.bits != nil {
		s.bits[id>>6] |= 1 << (id & 63)
		return
	}
	if s.small == nil {
		s.small = make(map[uint16]struct{})
	}
	s.small[id] = struct{}{}
	if len(s.small) > smallQoS2 {
		s.bits = new([1024]uint64)
		for id := range s.small {
			s.bits[id>>6] |= 1 << (id & 63)
		}
		s.small = nil
	}
}

// remove forgets id; it reports whether the set is now an empty map.
func (s *qos2Set) remove(id uint16) bool {
	if s.bits != nil {
		s.bits[id>>6] &^= 1 << (id & 63)
		return false
	}
	delete(s.small, id)
	return len(s.small) == 0
}

// all calls f for every identifier.
func (s *qos2Set) all(f func(uint16)) {
	if s.bits != nil {
		for i, w := range s.bits {
			for w != 0 {
				bit := uint16(bits.TrailingZeros64(w))
				w &^= 1 << bit
				f(uint16(i)<<6 | bit)
			}
		}
		return
	}
	for id := range s.small {
		f(id)
	}
}
