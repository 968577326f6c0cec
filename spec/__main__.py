"""python -m spec explain … | python -m spec check … | python -m spec coverage …"""
import sys

COMMANDS = ("explain", "check", "coverage")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: python -m spec {{{','.join(COMMANDS)}}} ...", file=sys.stderr)
        return 2
    if argv[0] == "explain":
        from spec.render import main as explain
        return explain(argv[1:])
    if argv[0] == "coverage":
        from spec.coverage import main as coverage
        return coverage(argv[1:])
    from spec.check import main as check
    return check(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
