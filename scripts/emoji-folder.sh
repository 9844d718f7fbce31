#!/usr/bin/env bash
# The real RGB folder that README "Training quality" measures on: the 64x64 PNGs of the npm package
# emoji-datasource-google 16.0.0 (3,786 images with the skin-tone variants), one sub-folder per category of the
# package's emoji.json (10 classes: gan-eval trains its classifier on them). The images are linked, not copied.
#   bash scripts/emoji-folder.sh [DIR]      default DIR: data/emoji (ignored by git); needs npm and python3
# Then: build/gan-train --config configs/folder-64.cfg --set data.path=DIR/by-category
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-data/emoji}
version=16.0.0
command -v npm >/dev/null || { echo "emoji-folder: npm is missing (Debian: apt-get install npm)" >&2; exit 2; }
mkdir -p "$out"
out=$(cd "$out" && pwd)
if [[ ! -f $out/package/emoji.json ]]; then
  # Unpacked next to the output and moved into place whole, so that an interrupted run leaves no half package.
  tmp=$(mktemp -d "$out/.download.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "emoji-datasource-google@$version" >/dev/null) ||
    { echo "emoji-folder: npm pack emoji-datasource-google@$version failed (is the npm registry reachable?)" >&2; exit 1; }
  tar -xzf "$tmp/emoji-datasource-google-$version.tgz" -C "$tmp" package/emoji.json package/img/google/64 \
    package/LICENSE
  rm -rf "$out/package"
  mv "$tmp/package" "$out/package"
fi
python3 - "$out" <<'EOF'
import json, os, sys
root = sys.argv[1]
images = os.path.join(root, "package", "img", "google", "64")
linked = 0
counts = {}
for e in json.load(open(os.path.join(root, "package", "emoji.json"))):
    category = e["category"].replace(" & ", "-and-").replace(" ", "-")
    for item in [e] + list((e.get("skin_variations") or {}).values()):
        src = os.path.join(images, item["image"])
        if not item.get("has_img_google") or not os.path.exists(src):
            continue
        folder = os.path.join(root, "by-category", category)
        os.makedirs(folder, exist_ok=True)
        dst = os.path.join(folder, item["image"])
        if not os.path.lexists(dst):
            os.symlink(os.path.relpath(src, folder), dst)
        linked += 1
        counts[category] = counts.get(category, 0) + 1
print("emoji-folder: %d images in %d categories under %s/by-category (%s)" % (
    linked, len(counts), root, ", ".join("%s %d" % kv for kv in sorted(counts.items()))))
EOF
