package client_test

import (
	"log"

	"github.com/herald-sd/herald/pushsvc/client"
	"github.com/herald-sd/herald/pushsvc/heraldtls"
)

// A client of agents that run with -tls-ca, -tls-cert and -tls-key: the
// CA, and a client certificate from `herald tls cert create -client app`.
func ExampleWithTransportCredentials() {
	creds, err := client.TLSCredentials(heraldtls.Files{
		CA:   "/etc/herald/herald-ca.pem",
		Cert: "/etc/herald/app.pem",
		Key:  "/etc/herald/app-key.pem",
	}) // empty fields: HERALD_TLS_CA, HERALD_TLS_CERT, HERALD_TLS_KEY
	if err != nil {
		log.Fatal(err)
	}
	c, err := client.New(nil, client.WithTransportCredentials(creds))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
}
