#!/usr/bin/env python3
"""Validate one JSON response body against a definition of Coder's strict swagger.

Usage:
    python3 tests/spec/validate.py DEFINITION < response.json

DEFINITION names an entry of the spec's `definitions`, e.g.
`codersdk.WorkspaceAgent` or `codersdk.Response`.

Method (see /work/shared/spec/GAPS.md section 3.2): load
coder-agents.strict.swagger.json (next to this file), rewrite every
`x-nullable: true` into a JSON-schema type union with "null", register the
document with `referencing` as a Draft 4 resource, and validate against
`{"$ref": "urn:spec#/definitions/DEFINITION"}` with `jsonschema.FormatChecker()`
(the Draft 4 checker alone skips `uuid`; `date-time` needs rfc3339-validator).

Exit status: 0 valid; 1 the body is not valid (each error printed with its JSON
path), or is not JSON; 2 usage error, unknown definition, or missing modules.
"""

import json
import os
import sys

SPEC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "coder-agents.strict.swagger.json")
SPEC_URI = "urn:spec"
INSTALL_HINT = "pip install -r tests/spec/requirements.txt"


def usage(message):
    print(f"validate.py: {message}", file=sys.stderr)
    print("usage: python3 tests/spec/validate.py DEFINITION < response.json", file=sys.stderr)
    sys.exit(2)


def load_modules():
    try:
        import jsonschema
        import referencing
        import referencing.jsonschema
        import rfc3339_validator  # noqa: F401  (jsonschema checks date-time only when present)
    except ImportError as e:
        print(f"validate.py: missing Python module ({e}); run: {INSTALL_HINT}", file=sys.stderr)
        sys.exit(2)
    checker = jsonschema.FormatChecker()
    missing = [f for f in ("uuid", "date-time") if f not in checker.checkers]
    if missing:
        print(
            f"validate.py: jsonschema cannot check format(s) {', '.join(missing)}; run: {INSTALL_HINT}",
            file=sys.stderr,
        )
        sys.exit(2)
    return jsonschema, referencing, checker


def nullable_to_union(node):
    """Rewrites `x-nullable: true` (Swagger 2.0) into plain JSON Schema, in place."""
    if isinstance(node, dict):
        for value in node.values():
            nullable_to_union(value)
        if node.pop("x-nullable", False) is True:
            kind = node.get("type")
            if isinstance(kind, str):
                node["type"] = [kind, "null"]
            elif isinstance(kind, list):
                if "null" not in kind:
                    kind.append("null")
            else:
                # No type (e.g. a bare $ref, whose siblings Draft 4 ignores):
                # wrap the whole schema.
                inner = dict(node)
                node.clear()
                node["anyOf"] = [inner, {"type": "null"}]
    elif isinstance(node, list):
        for value in node:
            nullable_to_union(value)


def print_error(error, indent=""):
    print(f"{indent}{error.json_path}: {error.message}")
    # For anyOf/oneOf failures, say why each branch failed.
    for sub in sorted(error.context or [], key=lambda e: (list(e.path), list(e.schema_path))):
        print_error(sub, indent + "    ")


def main(argv):
    if len(argv) != 2 or argv[1] in ("-h", "--help"):
        usage("expected exactly one argument, the definition name")
    definition = argv[1]
    jsonschema, referencing, checker = load_modules()

    try:
        with open(SPEC, encoding="utf-8") as f:
            spec = json.load(f)
    except (OSError, ValueError) as e:
        usage(f"cannot load the spec {SPEC}: {e}")
    definitions = spec.get("definitions", {})
    if definition not in definitions:
        close = sorted(d for d in definitions if definition.lower() in d.lower())
        hint = f" (did you mean: {', '.join(close)}?)" if close else ""
        usage(f"no definition named {definition!r} in {os.path.basename(SPEC)}{hint}")
    nullable_to_union(spec)

    raw = sys.stdin.read()
    try:
        body = json.loads(raw)
    except ValueError as e:
        print(f"$: the response is not JSON: {e}")
        sys.exit(1)

    resource = referencing.jsonschema.DRAFT4.create_resource(spec)
    registry = referencing.Registry().with_resource(SPEC_URI, resource)
    schema = {"$ref": f"{SPEC_URI}#/definitions/{definition}"}
    validator = jsonschema.Draft4Validator(schema, registry=registry, format_checker=checker)
    errors = sorted(
        validator.iter_errors(body), key=lambda e: (list(map(str, e.path)), list(map(str, e.schema_path)))
    )
    for error in errors:
        print_error(error)
    if errors:
        print(f"{len(errors)} error(s) against {definition}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv)
