// Package packet encodes and decodes MQTT 3.1.1 control packets (OASIS
// Standard, 29 October 2014), and the MQTT 3.1 CONNECT variant (protocol name
// "MQIsdp", level 3) that older brokers and some IoT Hub SDKs still send.
//
// There is one type per control packet: *Connect, *Connack, *Publish,
// *Puback, *Pubrec, *Pubrel, *Pubcomp, *Subscribe, *Suback, *Unsubscribe,
// *Unsuback, *Pingreq, *Pingresp and *Disconnect. All of them implement the
// sealed Packet interface; use a type switch.
//
// # Encoding
//
// AppendTo appends a packet's wire form to a caller's buffer and returns the
// extended buffer, like strconv.AppendInt. It never retains dst. A packet
// that breaks a rule of the specification is refused: AppendTo returns dst
// unchanged and an *Error wrapping ErrInvalid that names the rule. With a
// buffer of sufficient capacity, encoding allocates nothing.
//
// # Decoding
//
// Decoded packets alias the bytes they were decoded from: Topic, Payload,
// ClientID and every other []byte field point into the input. Unmarshal fills
// a caller-owned value from a caller-owned slice; a Decoder reads packets from
// an io.Reader into its own buffer, and what Next returns is valid only until
// the next call to Next. Use the Clone methods to keep a packet longer.
// Decoding allocates nothing once a Decoder's buffer has grown to the size of
// the packets it reads.
//
// Every rule the receiver of a packet can check is checked on every packet.
// A violation is returned as an *Error wrapping ErrMalformed; it carries the
// packet type and the conformance id of the broken rule ("MQTT-3.3.1-4"), or
// the spec section where the rule has no id. Decoding never panics, never
// reads past the packet's declared length, and never allocates a buffer
// sized by a length the peer claims: a Decoder rejects a packet larger than
// its limit before reading its body, and grows its buffer only as bytes
// arrive.
//
// # Decisions
//
// Where the specification leaves a choice, this package decides:
//
//   - A Remaining Length field longer than 4 bytes is malformed (spec 2.2.3).
//   - A non-minimal Remaining Length (such as 80 00 for zero) is accepted on
//     decode, as mosquitto, RabbitMQ and mqtt-packet accept it, and never
//     produced on encode.
//   - Reserved fixed-header flag bits are enforced exactly as Table 2.2
//     gives them [MQTT-2.2.2-2]; there is no lenient mode.
//   - Packet types 0 and 15 are malformed.
//   - Fixed-size packets (CONNACK, PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK,
//     PINGREQ, PINGRESP, DISCONNECT) with any other Remaining Length are
//     malformed, and so is any packet with bytes left over after its last
//     field.
//   - UTF-8 strings are checked fully: ill-formed sequences, surrogates
//     (U+D800 to U+DFFF) [MQTT-1.5.3-1] and U+0000 [MQTT-1.5.3-2] are
//     rejected. U+FEFF is an ordinary character and is kept [MQTT-1.5.3-3].
//   - A packet identifier of 0 is refused in every packet that carries one:
//     requests must use a non-zero one [MQTT-2.3.1-1] and acknowledgements
//     echo it [MQTT-2.3.1-6].
//   - The encoder and the decoder apply the same rules, so whatever decodes
//     re-encodes. In particular a CONNECT with an empty client identifier
//     and clean session 0 [MQTT-3.1.3-7], or an MQTT 3.1 client identifier
//     outside 1 to 23 bytes, is refused both ways; a server decoding one
//     finds the rule in the *Error and answers CONNACK 0x02 [MQTT-3.1.3-8].
//   - A CONNACK with a reserved return code (6 to 255), or with session
//     present set on a refusal [MQTT-3.2.2-4], is malformed.
//
// The package does no I/O except through the io.Reader given to a Decoder.
// Values are not safe for concurrent mutation; a Decoder has a single owner.
package packet
