package hubsim_test

import (
	"fmt"
	"log"

	"github.com/devicemq/mqtt/tencent"
	"github.com/devicemq/mqtt/tencent/hubsim"
)

func ExampleStart() {
	dev := tencent.DeviceInfo{
		AuthMode:     tencent.AuthModeKey,
		ProductID:    "ABCDEFGHIJ",
		DeviceName:   "dev1",
		DeviceSecret: "c2VjcmV0a2V5MTIzNDU2Nzg5MA==",
	}
	hub, err := hubsim.Start(dev, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer hub.Close()

	// Connect an MQTT 3.1.1 client to hub.TCPAddr() or hub.WebSocketURL()
	// with these credentials, as it would connect to dev.MQTTAddr(false).
	c, err := dev.Sign(nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(c.ClientID)
	// Output: ABCDEFGHIJdev1
}
