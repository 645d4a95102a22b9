#!/usr/bin/env bash
# Starts a three-node JetStream cluster on loopback (client ports 14222-14224), for
# measuring what replicated streams cost (BENCHMARKS.md, Ingest):
#   deploy/nats/local-cluster.sh start
#   cargo run --release -p aftersales -- bench ingest --nats nats://127.0.0.1:14222 --replicas 3
#   deploy/nats/local-cluster.sh stop
# One machine only shows the protocol's cost; real nodes belong in different failure domains.
set -euo pipefail
dir="${CLUSTER_DIR:-/tmp/aftersales-nats-cluster}"
case "${1:-}" in
  start)
    mkdir -p "$dir"
    routes="nats://127.0.0.1:16222,nats://127.0.0.1:16223,nats://127.0.0.1:16224"
    for n in 0 1 2; do
      nats-server -js -n "n$n" -a 127.0.0.1 -p $((14222 + n)) -sd "$dir/n$n" \
        --cluster_name aftersales --cluster "nats://127.0.0.1:$((16222 + n))" \
        --routes "$routes" >"$dir/n$n.log" 2>&1 &
      echo $! >"$dir/n$n.pid"
    done
    sleep 3
    echo "cluster up: nats://127.0.0.1:14222 (logs in $dir)"
    ;;
  stop)
    for n in 0 1 2; do
      [ -f "$dir/n$n.pid" ] && kill "$(cat "$dir/n$n.pid")" 2>/dev/null || true
    done
    rm -rf "$dir"
    ;;
  *)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
