package client_test

import (
	"log"
	"os"

	"github.com/herald-sd/herald/pushsvc/client"
)

// Send an ACL token to agents that run with -acl-file. The token comes from
// the environment here, so that it stays out of the code and of ps.
func ExampleWithToken() {
	c, err := client.New(client.ParseAddrs(""), client.WithToken(os.Getenv(client.EnvToken)))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
}
