#!/usr/bin/env python3
"""Make Stripe's published OpenAPI document servable by Prism.

    stripe_prism.py SPEC.yaml FIXTURES.json OUT.json

Prism dereferences the whole document when it starts. Stripe's document
does not finish that (every "expandable" field is an anyOf of an id string
and a $ref to the full resource, so resources reference each other in
circles), and Prism's deepObject form parser turns an omitted optional
object into an object of undefined members, which a nested `required`
list then refuses. Three rewrites, none of which loosens a top-level
parameter or a type check:

  * an expandable field keeps only its non-$ref branch (the id string the
    API returns unless asked to expand);
  * inside a deepObject-encoded form field, nested `required` lists go;
  * each resource schema takes Stripe's own fixture as its `example`, so
    Prism answers with real-looking objects (`pi_...`, `status`, ...).
"""
import json
import sys

import yaml


def without_expansions(node):
    """The document with every expandable anyOf reduced to its plain branch."""
    if isinstance(node, list):
        return [without_expansions(item) for item in node]
    if not isinstance(node, dict):
        return node
    if "x-expansionResources" in node and "anyOf" in node:
        plain = [b for b in node["anyOf"] if not (isinstance(b, dict) and "$ref" in b)]
        reduced = {k: v for k, v in node.items() if k not in ("anyOf", "x-expansionResources")}
        if len(plain) == 1:
            reduced.update(plain[0])
        elif plain:
            reduced["anyOf"] = plain
        return without_expansions(reduced)
    return {k: without_expansions(v) for k, v in node.items()}


def drop_required(node):
    """Remove every `required` list below `node`; count them."""
    dropped = 0
    stack = [node]
    while stack:
        cur = stack.pop()
        if isinstance(cur, dict):
            if isinstance(cur.get("required"), list):
                del cur["required"]
                dropped += 1
            stack.extend(cur.values())
        elif isinstance(cur, list):
            stack.extend(cur)
    return dropped


def relax_deep_objects(doc):
    dropped = 0
    for operations in doc.get("paths", {}).values():
        for op in operations.values():
            if not isinstance(op, dict):
                continue
            form = (
                op.get("requestBody", {})
                .get("content", {})
                .get("application/x-www-form-urlencoded")
            )
            if not form:
                continue
            fields = form.get("schema", {}).get("properties", {})
            for name, encoding in (form.get("encoding") or {}).items():
                if encoding.get("style") == "deepObject" and name in fields:
                    dropped += drop_required(fields[name])
    return dropped


def main(spec_path, fixtures_path, out_path):
    with open(spec_path, encoding="utf-8") as f:
        doc = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    doc = without_expansions(doc)
    relaxed = relax_deep_objects(doc)
    with open(fixtures_path, encoding="utf-8") as f:
        fixtures = json.load(f).get("resources", {})
    schemas = doc["components"]["schemas"]
    examples = 0
    for name, example in fixtures.items():
        if name in schemas and "example" not in schemas[name]:
            schemas[name]["example"] = example
            examples += 1
    with open(out_path + ".part", "w", encoding="utf-8") as f:
        json.dump(doc, f)
    import os

    os.replace(out_path + ".part", out_path)
    print(
        f"{out_path}: {len(doc['paths'])} paths, {relaxed} nested required lists dropped, "
        f"{examples} fixtures attached"
    )


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
