#!/usr/bin/env bash
# Packs what a GPU machine without apt or network needs to build the whole toolchain (oscar-verify --device
# cuda, the CUDA tests) into .gpu/ (git-ignored): a sysroot with this machine's Debian headers, CMake and
# pkg-config files and the shared libraries they need (glibc and libstdc++ excepted: the GPU machine's are
# newer), the GoogleTest sources, pkgconf, and the bundled models and text from ../shared/data.
# LibTorch is not packed: the GPU machine's Python torch package has it.
#
#   scripts/gpu-bundle.sh [out-dir]      (default .gpu)
#
# It writes <out-dir>/bundle.tar.xz (about 20 MB; carry it to the GPU machine, where scripts/gpu-full-check.sh
# unpacks it) and leaves the unpacked tree beside it in <out-dir>/tree.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bundle="${1:-$root/.gpu}"
out="$bundle/tree"
sysroot="$out/sysroot"
multiarch="$(gcc -dumpmachine 2>/dev/null | sed 's/-pc-/-/' || echo x86_64-linux-gnu)"
libdir="/usr/lib/$multiarch"
dev_packages=(libeigen3-dev libhdf5-dev libspdlog-dev libfmt-dev libcli11-dev nlohmann-json3-dev zlib1g-dev
              libssl-dev libopenblas-pthread-dev libpcre2-dev libutf8proc-dev)

[[ -d "$out" ]] && chmod -R u+w "$out"
rm -rf "$out"
mkdir -p "$sysroot" "$out/bin" "$out/data"

# Headers, CMake and pkg-config files, and the linker's .so links of the -dev packages (no static archives).
copy_path() {
  local path="$1"
  mkdir -p "$sysroot$(dirname "$path")"
  cp -a "$path" "$sysroot$path"
}
for package in "${dev_packages[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || { echo "gpu-bundle: $package is not installed (run scripts/setup.sh)" >&2; exit 2; }
  while IFS= read -r path; do
    case "$path" in
      *fortran*|*/liblapack.so|*/libblas.so|*/libpcre2-16.so|*/libpcre2-32.so|*/libpcre2-posix.so) continue ;;
      /usr/include/*|/usr/share/eigen3/*|*/cmake/*|*/pkgconfig/*|*.so) ;;
      *) continue ;;
    esac
    [[ -f "$path" || -L "$path" ]] && copy_path "$path"
  done < <(dpkg -L "$package")
done

# Each shared library is stored once, at its real path inside the sysroot; the names that lead to it (the
# linker's .so links, sonames) are relative symbolic links to that copy.
place() {  # place HOST_FILE SYSROOT_NAME
  local real
  real="$(readlink -f "$1")"
  if [[ ! -e "$sysroot$real" ]]; then mkdir -p "$sysroot$(dirname "$real")"; cp -L "$1" "$sysroot$real"; fi
  [[ "$2" == "$sysroot$real" ]] && return 0
  rm -f "$2"
  ln -s "$(realpath -m --relative-to="$(dirname "$2")" "$sysroot$real")" "$2"
}
while IFS= read -r link; do
  [[ -e "$link" ]] || place "${link#"$sysroot"}" "$link"
done < <(find "$sysroot" -type l)

# What those libraries load, and everything that loads in turn, by soname in the multiarch directory.
# glibc, the dynamic loader, libstdc++ and libgcc_s stay behind: the GPU machine's are newer.
is_system_library() {
  case "$1" in
    libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|libresolv.so*|ld-linux*|linux-vdso*|libstdc++.so*|libgcc_s.so*) return 0 ;;
    *) return 1 ;;
  esac
}
mkdir -p "$sysroot$libdir"
while IFS= read -r library; do  # the loader looks a library up by its soname, not by the linker's name
  soname="$(objdump -p "$library" | awk '$1 == "SONAME" {print $2}')"
  [[ -z "$soname" || -e "$(dirname "$library")/$soname" ]] || place "${library#"$sysroot"}" "$(dirname "$library")/$soname"
done < <(find "$sysroot" -name '*.so' | sort)
# pkgconf too: CMake's pkg_check_modules needs a pkg-config program.
cp -L "$(command -v pkgconf)" "$out/bin/pkg-config"
while IFS= read -r library; do
  while read -r soname _ resolved _; do
    is_system_library "$soname" || [[ -e "$sysroot$libdir/$soname" ]] || place "$resolved" "$sysroot$libdir/$soname"
  done < <(ldd "$library" | awk '/=> \// {print $1, "=>", $3}')
done < <(find "$sysroot" -name '*.so' | sort; echo "$out/bin/pkg-config")

cp -a /usr/src/googletest "$out/googletest"
data="$root/../shared/data"
for item in models text/tinystories_val.txt eval/mmlu/test/miscellaneous_test.csv eval/arc_challenge_test.jsonl; do
  [[ -e "$data/$item" ]] && { mkdir -p "$out/data/$(dirname "$item")"; cp -a "$data/$item" "$out/data/$item"; }
done

tar -C "$out" -cf - sysroot bin googletest data | xz -6 -T0 > "$bundle/bundle.tar.xz.part"
mv "$bundle/bundle.tar.xz.part" "$bundle/bundle.tar.xz"
echo "gpu-bundle: $(du -sh "$out" | cut -f1) unpacked, $(du -h "$bundle/bundle.tar.xz" | cut -f1) in $bundle/bundle.tar.xz"
