#!/usr/bin/env bash
# A chaos stage for a CI pipeline: inject a KafkaFault, prove something while it is active,
# remove it, and pass or fail on what was proven. Copy it into your pipeline, e.g.
#
#   examples/ci-chaos-stage.sh --expect-failure examples/reset-producer.yaml -- \
#       sh -c 'echo probe | kcat -P -b kafka:9092 -t orders -X client.id=checkout-svc -X message.timeout.ms=5000'
#   examples/ci-chaos-stage.sh examples/probability.yaml -- ./smoke-test.sh   # must still pass
#
# Steps: kubectl apply -f FAULT; kubectl wait --for=condition=Injected; run CHECK; kubectl delete
# --wait=false; kubectl wait --for=delete (the operator lets a fault go only once its rules are
# gone from every broker); exit with CHECK's status. The fault is removed on every way out:
# CHECK failing, a timeout, Ctrl-C, or the CI runner's SIGTERM.
set -euo pipefail

readonly PROG=${0##*/}

usage() {
	cat <<EOF
usage: $PROG [OPTIONS] FAULT.yaml -- CHECK [ARG...]

Injects the KafkaFault in FAULT.yaml (exactly one, in the namespace its metadata names), waits
until it is Injected, runs CHECK while the fault is active, deletes the fault and waits until it
is gone, then exits with CHECK's status.

options:
  --inject-timeout DUR    how long to wait for Injected (default \$INJECT_TIMEOUT or 120s)
  --recover-timeout DUR   how long to wait for the fault to be gone (default \$RECOVER_TIMEOUT or 120s)
  --expect-failure        the stage passes when CHECK fails (e.g. a producer that must not get
                          through) and fails when CHECK succeeds
  -h, --help              this text

environment:
  KUBECTL      the kubectl to run, with any flags (default: kubectl), e.g. "kubectl --context=ci"
  KUBECONFIG   read by kubectl as usual

exit status:
  CHECK's status (with --expect-failure: 0 when CHECK failed, 1 when it succeeded), or
  2 usage error or unusable FAULT file      3 the fault could not be applied
  4 the fault was not Injected in time      5 the fault was not gone in time (its rules may remain)
  130/143 interrupted by SIGINT/SIGTERM (the fault is removed first)
EOF
}

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }

usage_error() {
	log "$*"
	printf 'usage: %s [OPTIONS] FAULT.yaml -- CHECK [ARG...]   (--help for more)\n' "$PROG" >&2
	exit 2
}

inject_timeout=${INJECT_TIMEOUT:-120s}
recover_timeout=${RECOVER_TIMEOUT:-120s}
expect_failure=0
fault=
while (($# > 0)); do
	case $1 in
	--inject-timeout | --recover-timeout)
		(($# >= 2)) || usage_error "$1 needs a duration, e.g. 90s or 2m"
		if [[ $1 == --inject-timeout ]]; then inject_timeout=$2; else recover_timeout=$2; fi
		shift 2
		;;
	--inject-timeout=*) inject_timeout=${1#*=} && shift ;;
	--recover-timeout=*) recover_timeout=${1#*=} && shift ;;
	--expect-failure) expect_failure=1 && shift ;;
	-h | --help)
		usage
		exit 0
		;;
	--)
		shift
		break
		;;
	-*) usage_error "unknown option $1" ;;
	*)
		[[ -z $fault ]] || usage_error "one FAULT file only (got $fault and $1); put the check after --"
		fault=$1
		shift
		;;
	esac
done
[[ -n $fault ]] || usage_error "no FAULT file given"
(($# > 0)) || usage_error "no CHECK command given after --"
for timeout in "$inject_timeout" "$recover_timeout"; do
	[[ $timeout =~ ^([0-9]+(ms|s|m|h))+$ ]] || usage_error "$timeout is not a duration such as 90s or 2m"
done
[[ -f $fault && -r $fault ]] || usage_error "$fault is not a readable file"

read -r -a kubectl <<<"${KUBECTL:-kubectl}"
((${#kubectl[@]} > 0)) || usage_error "KUBECTL is empty"

# Ask the API server what FAULT holds, without creating anything: an invalid fault is refused
# here, with the server's message, and the namespace is the manifest's (or kubectl's default).
refused() {
	log "the API server refused $fault (is it a valid KafkaFault, and are the kafka-shock CRDs installed?)"
	exit 3
}
objects=$("${kubectl[@]}" apply --dry-run=server -f "$fault" -o name) || refused
if [[ $objects != kafkafault.kafkashock.io/* || $objects == *$'\n'* ]]; then
	log "$fault must hold exactly one KafkaFault; it holds: ${objects//$'\n'/ }"
	exit 2
fi
name=${objects#*/}
namespace=$("${kubectl[@]}" apply --dry-run=server -f "$fault" -o jsonpath='{.metadata.namespace}') || refused
readonly fault_ref=kafkafault/$name
readonly ns_args=(--namespace "$namespace")

# The check and every wait run in the background and are waited for, so that a signal is
# handled at once (bash runs traps only between foreground commands). Stdin stays the stage's.
exec 3<&0
child=
run() {
	"$@" <&3 3<&- &
	child=$!
	local status=0
	wait "$child" || status=$?
	child=
	return "$status"
}

applied=0
remove_fault() {
	log "deleting $fault_ref in namespace $namespace"
	"${kubectl[@]}" delete "$fault_ref" "${ns_args[@]}" --wait=false --ignore-not-found >&2 || true
	log "waiting up to $recover_timeout until it is gone (its rules removed from every broker)"
	if ! run "${kubectl[@]}" wait --for=delete "$fault_ref" "${ns_args[@]}" --timeout="$recover_timeout" >&2; then
		log "$fault_ref is still there after $recover_timeout: its rules may remain on the brokers;" \
			"see: kubectl describe $fault_ref -n $namespace"
		return 1
	fi
	applied=0
}

# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
	local status=$?
	trap '' INT TERM # a second Ctrl-C must not leave the fault behind
	if [[ -n $child ]]; then
		kill "$child" 2>/dev/null || true
		wait "$child" 2>/dev/null || true
		child=
	fi
	if ((applied)); then
		remove_fault || status=5
	fi
	exit "$status"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

show_status() {
	local status
	if ! status=$("${kubectl[@]}" get "$fault_ref" "${ns_args[@]}" -o jsonpath='{.status.phase}{range .status.conditions[*]}{"\n  "}{.type}={.status} {.reason}: {.message}{end}' 2>&1); then
		log "cannot read the status of $fault_ref: $status"
	elif [[ -z $status ]]; then
		log "$fault_ref has no status at all: is the kafka-shock operator running?"
	else
		log "$fault_ref is $status"
	fi
}

log "applying $fault ($fault_ref in namespace $namespace)"
applied=1
"${kubectl[@]}" apply -f "$fault" >&2 || {
	log "could not apply $fault"
	exit 3
}
log "waiting up to $inject_timeout for $fault_ref to be Injected"
if ! run "${kubectl[@]}" wait --for=condition=Injected "$fault_ref" "${ns_args[@]}" --timeout="$inject_timeout" >&2; then
	log "$fault_ref was not Injected within $inject_timeout"
	show_status
	exit 4
fi

log "fault injected; running the check: $*"
check_status=0
run "$@" || check_status=$?
if ((expect_failure)); then
	if ((check_status == 0)); then
		log "FAIL: the check succeeded, but it was expected to fail while the fault is active"
		result=1
	else
		log "PASS: the check failed (status $check_status), as expected while the fault is active"
		result=0
	fi
else
	if ((check_status == 0)); then
		log "PASS: the check succeeded while the fault was active"
	else
		log "FAIL: the check failed (status $check_status) while the fault was active"
	fi
	result=$check_status
fi

remove_fault || exit 5
log "$fault_ref is gone"
exit "$result"
