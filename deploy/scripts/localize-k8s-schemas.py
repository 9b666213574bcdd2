#!/usr/bin/env python3
# From ../shared/tools/deploy/localize-k8s-schemas.py (the project's shared tools), kept here so the
# tests do not depend on where ../shared is.
"""Copy kubernetes-validate's bundled JSON schemas for one Kubernetes version into a
directory that kubeconform can read offline: drop each file's $id and make the
shared-definitions $ref relative to the file."""
import json, os, sys, kubernetes_validate

ver, out = sys.argv[1], sys.argv[2]          # e.g. 1.31.0 OUT_DIR
src_root = os.path.join(os.path.dirname(kubernetes_validate.__file__), "kubernetes-json-schema")

def fix(node):
    if isinstance(node, dict):
        node.pop("$id", None)
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("/api/_definitions.json"):
            node["$ref"] = ref[len("/api/"):]
        for v in node.values():
            fix(v)
    elif isinstance(node, list):
        for v in node:
            fix(v)

for flavour in ("local", "local-strict"):
    src = os.path.join(src_root, f"v{ver}-{flavour}")
    dst = os.path.join(out, f"v{ver}-{flavour}")
    os.makedirs(dst, exist_ok=True)
    for name in os.listdir(src):
        if name.endswith(".json"):
            with open(os.path.join(src, name)) as f:
                doc = json.load(f)
            fix(doc)
            with open(os.path.join(dst, name), "w") as f:
                json.dump(doc, f)
print("schemas written under", out)
