// Package natstest gives tests a NATS server with JetStream: the server at 127.0.0.1:4222 when
// one answers there with JetStream enabled, otherwise an embedded nats-server with its store in
// the test's temporary directory.
//
// Embedded servers are shut down by the test's cleanup. The helpers call t.Fatal on failure and
// must be called from the test goroutine.
package natstest
