#!/usr/bin/env bash
# Two hub nodes on one machine sharing the first node's embedded NATS.
# Node 1 exposes its embedded NATS on 127.0.0.1:4333; node 2 joins it.
set -euo pipefail
cd "$(dirname "$0")/.."
export MEDIANEST_JWT_SECRET="${MEDIANEST_JWT_SECRET:-$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')}"
go build -o bin/medianest-hub ./cmd/medianest-hub
MEDIANEST_DATA_DIR=./data/node1 MEDIANEST_NATS_LISTEN=127.0.0.1:4333 MEDIANEST_LISTEN_ADDR=127.0.0.1:8080 \
  ./bin/medianest-hub serve &
one=$!
trap 'kill $one 2>/dev/null' EXIT
sleep 1
echo "token for both nodes: $(./bin/medianest-hub token --user demo --role user)"
MEDIANEST_DATA_DIR=./data/node2 MEDIANEST_NATS_URL=nats://127.0.0.1:4333 MEDIANEST_LISTEN_ADDR=127.0.0.1:8081 \
  ./bin/medianest-hub serve
