#!/usr/bin/env bash
# Sends Berth the webhook GitHub would send for a push of a local repository's branch: a push
# payload naming the branch's newest commit, signed with the webhook secret (HMAC-SHA256, as
# GitHub's X-Hub-Signature-256), posted with curl. For trying push-to-deploy without GitHub.
#
#   BERTH_GITHUB__WEBHOOK_SECRET=s3cret scripts/webhook-push.sh /srv/git/hello.git [main]
#
# The app must follow that repository (its `repo` is the same path) and branch, with auto_deploy
# on. BERTH_API (default http://127.0.0.1:7700) is the API's address; the secret is the one the
# coordinator runs with (github.webhook_secret).
set -euo pipefail
repo=$(cd "${1:?usage: $0 <repository> [branch]}" && pwd)
branch=${2:-main}
api=${BERTH_API:-http://127.0.0.1:7700}
secret=${BERTH_GITHUB__WEBHOOK_SECRET:?set BERTH_GITHUB__WEBHOOK_SECRET to the coordinator\'s webhook secret}

sha=$(git -C "$repo" rev-parse "refs/heads/$branch")
subject=$(git -C "$repo" log -1 --format=%s "$sha" | sed 's/\\/\\\\/g; s/"/\\"/g')
author=$(git -C "$repo" log -1 --format='"name":"%an","email":"%ae"' "$sha")
body=$(printf '{"ref":"refs/heads/%s","after":"%s","repository":{"clone_url":"file://%s"},"head_commit":{"id":"%s","message":"%s","author":{%s}}}' \
  "$branch" "$sha" "$repo" "$sha" "$subject" "$author")
signature=$(printf '%s' "$body" | openssl dgst -sha256 -hmac "$secret" | sed 's/^.*= *//')

curl -sS --fail-with-body "$api/api/v1/webhooks/github" \
  -H 'Content-Type: application/json' \
  -H 'X-GitHub-Event: push' \
  -H "X-GitHub-Delivery: local-$(date +%s%N)" \
  -H "X-Hub-Signature-256: sha256=$signature" \
  --data-binary "$body"
echo
