#!/usr/bin/env python3
"""Checks the Kubernetes manifests and Helm charts beside this file (CI runs it).

- Every resource in every YAML file (the charts' templates and the examples beside them)
  validates strictly (an unknown field is an error) against the schemas of one Kubernetes
  version, which the kubernetes-validate package carries: no cluster and no network needed.
  A kind without a schema is an error too (the package's command line only warns).
- No mapping holds a key twice (YAML parsers keep the last one silently).
- Every chart (a folder with templates/) has a Chart.yaml of apiVersion v2 that names its
  folder and has a SemVer version, and its templates hold no `{{`: the charts have no
  template logic, so `kubectl apply -f` takes their templates as they are.

Usage: python3 deploy/kubernetes/check.py [KUBERNETES_VERSION]   (default 1.33.0)
"""

import re
import sys
from pathlib import Path

import kubernetes_validate
import yaml

VERSION = sys.argv[1] if len(sys.argv) > 1 else "1.33.0"
HERE = Path(__file__).resolve().parent


class UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses a key given twice in one mapping."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, (str, int, float, bool)):
                continue  # a complex key: the base class refuses it
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def documents(path):
    return [d for d in yaml.load_all(path.read_text(), Loader=UniqueKeyLoader) if d]


def main():
    errors = []
    resources = 0
    files = sorted(p for p in HERE.rglob("*.yaml") if p.name != "Chart.yaml")
    for path in files:
        rel = path.relative_to(HERE)
        try:
            docs = documents(path)
        except yaml.YAMLError as e:
            errors.append(f"{rel}: {e}")
            continue
        if not docs:
            errors.append(f"{rel}: no resource")
        for doc in docs:
            name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            try:
                kubernetes_validate.validate(doc, VERSION, strict=True)
                resources += 1
            except kubernetes_validate.ValidationError as e:
                path_in = ".".join(str(p) for p in e.path)
                errors.append(f"{rel}: {name}: {path_in}: {e.message}")
            except Exception as e:  # no schema for the kind, an unknown version, ...
                errors.append(f"{rel}: {name}: {type(e).__name__} {e}")

    charts = sorted(p.parent for p in HERE.glob("*/templates"))
    for chart in charts:
        rel = chart.relative_to(HERE)
        try:
            meta = yaml.load((chart / "Chart.yaml").read_text(), Loader=UniqueKeyLoader)
        except (OSError, yaml.YAMLError) as e:
            errors.append(f"{rel}/Chart.yaml: {e}")
            continue
        if meta.get("apiVersion") != "v2":
            errors.append(f"{rel}/Chart.yaml: apiVersion must be v2")
        if meta.get("name") != chart.name:
            errors.append(f"{rel}/Chart.yaml: name must be {chart.name!r}")
        if not re.fullmatch(r"\d+\.\d+\.\d+", str(meta.get("version", ""))):
            errors.append(f"{rel}/Chart.yaml: version must be SemVer (MAJOR.MINOR.PATCH)")
        templates = sorted((chart / "templates").iterdir())
        if not templates:
            errors.append(f"{rel}: no template")
        for t in templates:
            if "{{" in t.read_text():
                errors.append(f"{t.relative_to(HERE)}: template logic ({{{{) in a template")

    for e in errors:
        print(f"ERROR {e}")
    print(
        f"kubernetes: {resources} resources in {len(files)} files valid against Kubernetes "
        f"{VERSION} (strict), {len(charts)} charts checked; "
        f"{len(errors)} errors"
    )
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
