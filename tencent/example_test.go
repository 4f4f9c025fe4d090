package tencent_test

import (
	"fmt"
	"log"
	"time"

	"github.com/devicemq/mqtt/tencent"
)

func ExampleDeviceInfo_Sign() {
	d, err := tencent.ParseDeviceInfo([]byte(`{
		"auth_mode": "KEY",
		"productId": "ABCDEFGHIJ",
		"deviceName": "dev1",
		"key_deviceinfo": {"deviceSecret": "c2VjcmV0a2V5MTIzNDU2Nzg5MA=="}
	}`))
	if err != nil {
		log.Fatal(err)
	}
	// Fixed connection ID and expiry to get a reproducible result; leave
	// them zero in real code.
	c, err := d.Sign(&tencent.SignOptions{ConnID: "abcde", Expiry: time.Unix(1700000000, 0)})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(d.MQTTAddr(false))
	fmt.Println(c.ClientID)
	fmt.Println(c.Username)
	fmt.Println(string(c.Password))
	// Output:
	// ABCDEFGHIJ.iotcloud.tencentdevices.com:1883
	// ABCDEFGHIJdev1
	// ABCDEFGHIJdev1;12010126;abcde;1700000000
	// 31c8fe00f2e0daa941ceeaa66cd2f728e43fa5486f86812b433b0d53ee493b0e;hmacsha256
}

func ExampleParseTimeReply() {
	sent := time.Now()
	// ... publish tencent.TimeRequestPayload to d.OperationTopic() and wait
	// for the reply on d.OperationResultTopic() ...
	payload := []byte(`{"type":"get","time":1700000000,"ntptime1":1700000000123,"ntptime2":1700000000125}`)
	received := sent.Add(100 * time.Millisecond)

	now, err := tencent.ParseTimeReply(payload, sent, received)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(now.UnixMilli()) // (123 + 125 + 100) / 2 = 174
	// Output: 1700000000174
}
