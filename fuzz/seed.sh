#!/bin/sh
# Fills corpus/<target>/ with seeds taken from the repository's fixtures and
# examples (the corpus directory itself is not committed). Run from anywhere:
#   sh fuzz/seed.sh
set -eu
cd "$(dirname "$0")"
F=../tests/fixtures/identity
for t in derp_relay drpc_frames identity_aws identity_azure identity_gcp manifest proof_json rpc_requests; do
  mkdir -p "corpus/$t"
done

# A byte with value $1 (0-255).
byte() { printf "\\$(printf %03o "$1")"; }
# A file's contents as a JSON string literal (no trailing newline added).
json_string() {
  printf '"'
  sed 's/\\/\\\\/g; s/"/\\"/g; s/\t/\\t/g' "$1" | awk 'NR > 1 { printf "\\n" } { printf "%s", $0 }'
  printf '"'
}

# derp_relay: selector (bit 0: the harness does the handshake; bits 1-3:
# piece size; bit 4: ClientInfo JSON sealed by the harness / a duplicate
# connection; bits 5-6: SendPacket destinations rewritten; bit 7: the peer
# talks) + bytes. The target's keys are fixed (relay [1;32], fuzzed client
# [2;32], peer [3;32], nonce [4;24]): HELLO is the fuzzed client's ClientInfo
# frame, PEER the peer's public key.
HELLO=AgAAAGjOjTrRzLYz7HtwwXgUpcduzQKWhQUNNEdFugWHDlh9WQQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBHKq5d0o1TkMrDvPCJohEhRefY0FYyTxhucWXBukmA9l2sgThURiZTod/DfjSsuN+Q==
PEER=Xf7dO2vUf2+ijuFdlp1bsOpTd01Ii9r53xxuASSz7yI=
ME=zo060cy2M+x7cMF4FKXHbs0CloUFDTRHRboFhw5YfVk=
b64() { printf '%s' "$1" | base64 -d; }
# A DERP frame header: type $1, big-endian length $2.
header() { byte "$1"; byte $(($2 >> 24 & 255)); byte $(($2 >> 16 & 255)); byte $(($2 >> 8 & 255)); byte $(($2 & 255)); }
# One of each frame a client sends: packets to the peer, to itself and (disco)
# to nobody, NotePreferred, a Ping with extra bytes, a Pong, KeepAlive, an
# unknown type.
derp_frames() {
  header 4 42; b64 $PEER; printf 'hello peer'
  header 4 44; b64 $ME; printf 'to myself'; printf '\000\001\002'
  header 4 100; head -c 32 /dev/zero | tr '\000' '\011'; printf '\124\123\360\237\222\254'; head -c 62 /dev/zero
  header 7 1; byte 1
  header 18 12; printf '12345678ext!'
  header 19 8; printf '87654321'
  header 6 0
  header 66 3; printf 'xyz'
}
{ byte 0; b64 $HELLO; derp_frames; } > corpus/derp_relay/handshake
{ byte 2; b64 $HELLO; derp_frames; } > corpus/derp_relay/handshake-bytewise
{ byte 16; printf '{"version":2}'; byte 0; derp_frames; } > corpus/derp_relay/json
{ byte 16; printf 'null'; byte 0; derp_frames; } > corpus/derp_relay/json-null
{ byte 1; derp_frames; } > corpus/derp_relay/frames
{ byte 3; derp_frames; } > corpus/derp_relay/frames-bytewise
{ byte 145; derp_frames; } > corpus/derp_relay/frames-duplicate-talking
for k in 10 16 17; do
  { byte 1; derp_frames; header $k 0; } > "corpus/derp_relay/frames-mesh-$k"
done
# The largest packet, to the peer; 40 to itself (its queues hold 16).
{ byte 33; header 4 65568; head -c 65568 /dev/zero; } > corpus/derp_relay/frames-largest
{ byte 65; i=0; while [ $i -lt 40 ]; do header 4 40; head -c 40 /dev/zero; i=$((i + 1)); done; } \
  > corpus/derp_relay/frames-to-itself

# drpc_frames: chunk-size selector + a unary GetManifest call as an agent sends it.
{ byte 0; printf '\003\001\001\041/coder.agent.v2.Agent/GetManifest\005\001\002\000\015\001\003\000'; } > corpus/drpc_frames/unary

# rpc_requests: selector (index into DECODERS) + a request body, the vectors
# of src/rpc/proto/tests.rs and a few more.
{ byte 0; } > corpus/rpc_requests/get-manifest
{ byte 2; printf '\012\013\012\007\012\003tcp\020\002\020\002'; } > corpus/rpc_requests/update-stats
{ byte 3; printf '\012\015\010\005\022\011\010\200\342\317\252\006\020\364\003'; } > corpus/rpc_requests/update-lifecycle
{ byte 5; printf '\012\015\012\007v2.24.1\032\002\001\003'; } > corpus/rpc_requests/update-startup
{ byte 6; printf '\022\003\012\001k'; } > corpus/rpc_requests/batch-update-metadata
{ byte 7; printf '\012\020abcdefghijklmnop\022\012\012\002\010\001\022\002hi\030\003'; } > corpus/rpc_requests/batch-create-logs
{ byte 14; printf '\012\056\012\054\010\001\050\347\007\062\016\012\003999\021\000\000\000\000\000\000\370\077\102\025fd7a:115c:a1e0::1/128'; } > corpus/rpc_requests/coordinate-update-self
# The most a byte can cost: 2048 empty elements of a repeated message field
# (key, length 0), in BatchUpdateMetadata (field 2) and BatchCreateLogs (2).
for sel in 6 7; do
  { byte $sel; i=0; while [ $i -lt 2048 ]; do printf '\022\000'; i=$((i + 1)); done; } \
    > "corpus/rpc_requests/repeated-empty-$sel"
done

# identity_aws: document NUL signature.
for n in coder-us-east-1-2022 taskcluster-us-west-2-2019; do
  d=$F/aws/$n
  { cat "$d/document.json"; byte 0; cat "$d/signature.b64"; } > "corpus/identity_aws/$n"
done

# identity_azure: time selector (index into TIMES) + DER envelope.
i=0
for n in coder-regular-2022 coder-govcloud-2023 ansible-sap-operations-2023 coder-rsa-2024 \
         taskcluster-2025 coder-regular-2026; do
  { byte $i; base64 -d < "$F/azure/$n/signature.b64"; } > "corpus/identity_azure/$n"
  { byte $((i + 128)); cat "$F/azure/$n/signature.b64"; } > "corpus/identity_azure/$n-b64"
  i=$((i + 1))
done
for f in "$F"/generated/azure-*.b64; do
  { byte 6; base64 -d < "$f"; } > "corpus/identity_azure/$(basename "$f" .b64)"
done

# identity_gcp: time selector + token.
i=0
for n in istio-2019 smallstep-kops-2019 infisical-2024 google-auth-java-sa-no-instance-2020; do
  { byte $i; tr -d '\n' < "$F/gcp/$n/token.jwt"; } > "corpus/identity_gcp/$n"
  i=$((i + 1))
done

# manifest: selector 0 = TOML, 1 = JSON.
for f in ../config/examples/*.toml; do
  { byte 0; cat "$f"; } > "corpus/manifest/$(basename "$f")"
done
{ byte 1; printf '%s' '{"name":"dev","owner":"admin","resources":[{"name":"vm","type":"aws_instance","instance_id":"i-0abc","agents":[{"name":"main","auth":"aws-instance-identity","apps":[{"slug":"code","url":"http://localhost:8080","healthcheck":{"url":"http://localhost:8080/h","interval":5,"threshold":3}}],"scripts":[{"display_name":"s","script":"echo","cron":"0 * * * * *"}],"children":[{"name":"sub"}]}]}]}'; } > corpus/manifest/example.json

# proof_json: request bodies as agents send them.
for n in coder-us-east-1-2022 taskcluster-us-west-2-2019; do
  d=$F/aws/$n
  { printf '{"document":'; json_string "$d/document.json"; printf ',"signature":'; json_string "$d/signature.b64"; printf ',"agent_name":"main"}'; } \
    > "corpus/proof_json/aws-$n"
done
for n in coder-rsa-2024 taskcluster-2025; do
  cp "$F/azure/$n/request.json" "corpus/proof_json/azure-$n"
done
for n in istio-2019 infisical-2024; do
  { printf '{"json_web_token":"'; tr -d '\n' < "$F/gcp/$n/token.jwt"; printf '","agent_name":"  alpha "}'; } > "corpus/proof_json/gcp-$n"
done
echo "seeded: $(ls corpus/* | wc -l) entries in $(pwd)/corpus"
