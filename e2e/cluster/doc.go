// Package cluster runs `onair cluster` as real separate processes (three etcd
// members, two replicas of every service, the gateway) and checks that SDK
// clients keep working when a room replica and an etcd member are killed.
package cluster
