#!/usr/bin/env bash
# Compiles kafka-shock's Java test clients (kafkashock/clients/*.java) with javac against the
# lab's Kafka jars into one jar in the cache. Idempotent: the jar is keyed by a hash of the
# sources and the Kafka version, and rebuilt only when they change. `tests/lab/lab.sh build`
# runs it; so does `kafka-client` before each run, so an edited source is never run stale.
set -euo pipefail
HERE=$(dirname "$(readlink -f "$0")")
source "$HERE/../../lab/lib/common.sh"
OUT=$KSHOCK_CACHE/test-clients
JAR=$OUT/kafka-shock-test-clients.jar

[[ -f $KAFKA_LIBS/kafka-clients-$KAFKA_VERSION.jar ]] || die "Kafka jars are not built yet: run tests/lab/lab.sh build"
key=$(cat "$HERE"/kafkashock/clients/*.java <(echo "$KAFKA_VERSION") | sha256sum | cut -c1-16)
up_to_date() { [[ -f $JAR && $(cat "$OUT/key" 2>/dev/null) == "$key" ]]; }
up_to_date && exit 0

mkdir -p "$OUT"
exec 9>"$OUT/lock"
flock 9 # parallel test runs compile once
up_to_date && exit 0
work=$(mktemp -d "$OUT/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
javac -Xlint:all,-classfile -Werror --release 17 -cp "$KAFKA_LIBS/*" -d "$work/classes" "$HERE"/kafkashock/clients/*.java
jar --create --file "$work/clients.jar" -C "$work/classes" .
mv "$work/clients.jar" "$JAR"
echo "$key" >"$OUT/key"
log "compiled the Java test clients into $JAR"
