package client

import "strings"

// MatchTopic reports whether the topic name matches the topic filter (spec
// 4.7). "+" matches exactly one level, which may be empty [MQTT-4.7.1-3];
// "#" matches its parent level and any number of levels below it
// [MQTT-4.7.1-2]; filters starting with a wildcard never match topic names
// starting with "$" [MQTT-4.7.2-1]. Matching is byte for byte and case
// sensitive, with no normalisation [MQTT-4.7.3-4]. The filter is assumed
// valid (see packet.ValidTopicFilter).
func MatchTopic(filter, topic string) bool {
	if topic != "" && topic[0] == '$' && filter != "" && (filter[0] == '+' || filter[0] == '#') {
		return false
	}
	for {
		fl, frest, fmore := strings.Cut(filter, "/")
		if fl == "#" {
			return true
		}
		tl, trest, tmore := strings.Cut(topic, "/")
		if fl != "+" && fl != tl {
			return false
		}
		switch {
		case !fmore && !tmore:
			return true
		case !fmore:
			return false
		case !tmore:
			// "sport/#" matches "sport": "#" includes the parent level.
			return frest == "#"
		}
		filter, topic = frest, trest
	}
}
