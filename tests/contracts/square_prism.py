#!/usr/bin/env python3
"""Prepare Square's API document for Prism.

Usage: square_prism.py api.json out.json

Sixty `$ref`s in Square's document point at a schema on Square's CDN
(`https://developer-production-s.squarecdn.com/schemas/v1/common.json#…`),
all of them inside the `example` of webhook event schemas. Prism resolves
every reference before it serves, and the machines this runs on have no
internet: each such reference becomes the type it names (`String` →
`{"type": "string"}`, `Number` → `{"type": "number"}`, else an object).

The document is also cut to the paths the Square adapter calls (payments,
refunds, locations) and the components they reference, so Prism loads it
in seconds: the full document has 240 paths and one dangling reference
(`CatalogModifierToggleOverrideType`, in the catalog API) that Prism
refuses. Nothing the adapter's requests touch is changed.
"""
import json
import sys

src, out = sys.argv[1], sys.argv[2]
with open(src) as f:
    doc = json.load(f)

KINDS = {"String": "string", "Number": "number", "Boolean": "boolean", "Integer": "integer"}
changed = 0


def walk(x):
    global changed
    if isinstance(x, dict):
        ref = x.get("$ref")
        if isinstance(ref, str) and ref.startswith("http"):
            name = ref.rsplit(".", 1)[-1]
            x.clear()
            x["type"] = KINDS.get(name, "object")
            changed += 1
            return
        for v in x.values():
            walk(v)
    elif isinstance(x, list):
        for v in x:
            walk(v)


walk(doc)

KEEP = ("/v2/payments", "/v2/refunds", "/v2/locations")
doc["paths"] = {p: v for p, v in doc["paths"].items() if p.startswith(KEEP)}
schemas = doc.get("components", {}).get("schemas", {})
needed, todo = set(), [doc["paths"]]
while todo:
    x = todo.pop()
    if isinstance(x, dict):
        ref = x.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            name = ref.split("/")[-1]
            if name not in needed and name in schemas:
                needed.add(name)
                todo.append(schemas[name])
        todo.extend(x.values())
    elif isinstance(x, list):
        todo.extend(x)
doc["components"]["schemas"] = {k: v for k, v in schemas.items() if k in needed}


def dangling(x):
    if isinstance(x, dict):
        ref = x.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/") and ref.split("/")[-1] not in needed:
            x.clear()
            return
        for v in x.values():
            dangling(v)
    elif isinstance(x, list):
        for v in x:
            dangling(v)


dangling(doc)
if changed == 0:
    sys.exit("no remote $ref found: Square's document changed; check square_prism.py")
with open(out, "w") as f:
    json.dump(doc, f)
print(f"replaced {changed} remote references", file=sys.stderr)
