module github.com/devicemq/mqtt/bench

go 1.26.0

replace github.com/devicemq/mqtt => ../

require (
	github.com/256dpi/gomqtt v0.14.4
	github.com/devicemq/mqtt v0.0.0-00010101000000-000000000000
	github.com/eclipse/paho.mqtt.golang v1.5.1
	github.com/mochi-mqtt/server/v2 v2.7.9
	github.com/soypat/natiu-mqtt v0.5.1
)

require github.com/256dpi/mercury v0.2.0 // indirect
