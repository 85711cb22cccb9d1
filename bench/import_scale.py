"""Importing and compiling many facts: ``kvc import easyedit`` + ``kvc compile`` of all
5,000 records of ``counterfact_edit_5k.json``.

Each CLI command is run ``--repeats`` times as a fresh process (what a user waits for,
interpreter start included); the median is reported. In-process, the same work is
split into reading+converting, parsing+checking (tokens per second from lark's lexer)
and lowering to the plan; then 2x and 4x the file (subjects renamed) show whether the
cost per edit stays flat. Machine facts and the load average are saved beside them.

    python bench/import_scale.py --repeats 3
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from common import median, parser, save, table, timer

from kedit_vc.compiler.lower import lower
from kedit_vc.eval.datasets import data_dir
from kedit_vc.importers import import_file
from kedit_vc.lang import load_text
from kedit_vc.lang.parse import parser as spec_parser

ROOT = Path(__file__).resolve().parents[1]


def _cli(args: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with timer() as t:
        subprocess.run([sys.executable, "-m", "kedit_vc.cli.main", *args], check=True, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return t["s"]


def run(data: Path, repeats: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="kvc-import-") as folder:
        spec = Path(folder) / "cf5k.kedit"
        import_s = [_cli(["import", "easyedit", str(data), "-o", str(spec)]) for _ in range(repeats)]
        compile_s = [_cli(["compile", str(spec), "-o", str(Path(folder) / "plan.json")]) for _ in range(repeats)]
        text = spec.read_text()
    with timer() as t_convert:
        result = import_file("easyedit", data)
    with timer() as t_check:
        program = load_text(text, "cf5k.kedit")
    with timer() as t_lower:
        plan = lower(program)
    tokens = sum(1 for _ in spec_parser().lark.lex(text))
    return {
        "records": result.records, "edits": len(plan.requests), "relations": text.count("\nrelation "),
        "spec_bytes": len(text.encode()), "spec_tokens": tokens, "repeats": repeats,
        "cli_import_s": median(import_s), "cli_compile_s": median(compile_s),
        "cli_import_runs_s": import_s, "cli_compile_runs_s": compile_s,
        "convert_s": t_convert["s"], "parse_check_s": t_check["s"], "lower_s": t_lower["s"],
        "parse_check_tokens_per_s": tokens / t_check["s"],
    }


def scaled(data: Path, copies: int) -> list[dict[str, Any]]:
    """``copies`` renamed copies of every record (subject "S" -> "S 2", ...): a bigger, valid file."""
    records = json.loads(data.read_text(encoding="utf-8"))
    out = []
    for copy in range(1, copies + 1):
        for record in records:
            subject = record["subject"] if copy == 1 else f"{record['subject']} {copy}"
            out.append({**record, "subject": subject,
                        "prompt": record["prompt"].replace(record["subject"], subject),
                        "rephrase_prompt": record["rephrase_prompt"].replace(record["subject"], subject)})
    return out


def growth(data: Path, copies: list[int]) -> list[dict[str, Any]]:
    """In-process import + compile seconds for 1x, 2x, 4x... the file: linear or not."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="kvc-import-") as folder:
        for n in copies:
            path = Path(folder) / f"x{n}.json"
            path.write_text(json.dumps(scaled(data, n)), encoding="utf-8")
            with timer() as t_import:
                text = import_file("easyedit", path).text
            with timer() as t_compile:
                plan = lower(load_text(text, path.name))
            rows.append({"copies": n, "edits": len(plan.requests), "import_s": t_import["s"],
                         "compile_s": t_compile["s"], "compile_us_per_edit": 1e6 * t_compile["s"] / len(plan.requests)})
    return rows


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__)
    p.add_argument("--data", default=str(data_dir() / "counterfact_edit_5k.json"))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--copies", default="1,2,4", help="file sizes for the growth check, in copies of the file")
    args = p.parse_args(argv)
    figures = run(Path(args.data), args.repeats)
    figures["growth"] = growth(Path(args.data), [int(c) for c in args.copies.split(",")])
    figures["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    figures["threads"] = args.threads
    print(table(["records", "edits", "relations", "kvc import s", "kvc compile s", "parse+check s", "tokens/s"],
                [[figures["records"], figures["edits"], figures["relations"], f"{figures['cli_import_s']:.2f}",
                  f"{figures['cli_compile_s']:.2f}", f"{figures['parse_check_s']:.2f}",
                  f"{figures['parse_check_tokens_per_s']:.0f}"]]))
    print(table(["edits", "import s", "compile s", "compile us/edit"],
                [[g["edits"], f"{g['import_s']:.2f}", f"{g['compile_s']:.2f}", f"{g['compile_us_per_edit']:.0f}"]
                 for g in figures["growth"]]))
    print(save("import_scale", {"args": vars(args), "figures": figures}))


if __name__ == "__main__":
    main()
