# Sourced by the acceptance scripts (verify-bundled.sh, compare-methods.sh): their shared options, then the
# set-up and build unless --no-build.
#   parse_acceptance_options DEFAULT_OUT "$@"   sets quick (0/1), build (0/1) and out
parse_acceptance_options() {
  local script
  script="$(basename "$0")"
  quick=0 build=1 out="$1"
  shift
  while [ $# -gt 0 ]; do
    case "$1" in
      --quick) quick=1 ;;
      --no-build) build=0 ;;
      --out)
        [ $# -ge 2 ] || { echo "$script: --out needs a directory" >&2; exit 2; }
        out="$2"; shift ;;
      *) echo "$script: unknown option $1" >&2; exit 2 ;;
    esac
    shift
  done
  if [ "$build" = 1 ]; then
    scripts/setup.sh
    scripts/build.sh
  fi
}
