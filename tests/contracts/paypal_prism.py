#!/usr/bin/env python3
"""Prepare PayPal's Orders v2 document for Prism.

Usage: paypal_prism.py checkout_orders_v2.json out.json

PayPal's document gives an order's `id` no example, so Prism answers a
created order with `"id": "string"`; the same document then requires
`^[A-Z0-9]+$` for the `{id}` of a capture, so a create-then-capture flow
(the adapter's `charge`) could never pass Prism's own validation. The one
change: the order's `id` gets the example PayPal's documentation uses
(`5O190127TN364715T`). Everything else is served as published.
"""
import json
import sys

src, out = sys.argv[1], sys.argv[2]
with open(src) as f:
    doc = json.load(f)
order = doc["components"]["schemas"]["order"]
for part in order.get("allOf", []):
    props = part.get("properties", {})
    if "id" in props:
        props["id"]["example"] = "5O190127TN364715T"
        break
else:
    sys.exit("the order schema has no `id` property: update paypal_prism.py")
with open(out, "w") as f:
    json.dump(doc, f)
