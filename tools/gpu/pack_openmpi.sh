#!/usr/bin/env bash
# Packs this Debian machine's OpenMPI 4.1 (openmpi-bin, libopenmpi-dev and the libraries they load)
# into .gpu/openmpi (gitignored), relocatable, for `device` calls to carry: the GPU machine has no
# MPI and cannot reach a package mirror. Use there with `source .gpu/openmpi/env.sh`:
#   - OPAL_PREFIX moves OpenMPI's prefix (Debian configured its libdir, pkglibdir and data dir
#     relative to ${prefix}, so the tree below mirrors /usr);
#   - PMIX_PREFIX does the same for the external PMIx 4 that Debian's OpenMPI launches with;
#   - the shared libraries (libmpi, ORTE/OPAL, hwloc, libevent, PMIx, munge) come from deps/;
#   - components needing what the machine lacks (UCX, libfabric, verbs, PSM) fail to load quietly;
#     one host: shared memory (btl vader) and ob1.
set -euo pipefail
cd "$(dirname "$0")/../.."
R=.gpu/openmpi
MA=lib/x86_64-linux-gnu
rm -rf "$R" && mkdir -p "$R/bin" "$R/deps" "$R/$MA/openmpi/lib" "$R/share"
for b in orterun orted ompi_info opal_wrapper; do cp -L /usr/bin/$b "$R/bin/"; done
ln -s orterun "$R/bin/mpirun"
ln -s opal_wrapper "$R/bin/mpicxx"
mkdir -p "$R/$MA/openmpi/include"
cp -L /usr/$MA/openmpi/include/*.h "$R/$MA/openmpi/include/"   # the C API (not the devel headers)
mkdir -p "$R/$MA/openmpi/include/openmpi/ompi/mpi"             # + the C++ bindings mpi.h includes
cp -rL /usr/$MA/openmpi/include/openmpi/ompi/mpi/cxx "$R/$MA/openmpi/include/openmpi/ompi/mpi/"
cp -rL /usr/$MA/openmpi/lib/openmpi3 "$R/$MA/openmpi/lib/"
# The link-time names point at deps/ (below), where the libraries are.
for f in /usr/$MA/openmpi/lib/libmca_common_*.so /usr/$MA/openmpi/lib/libmpi.so /usr/$MA/openmpi/lib/libmpi_cxx.so \
         /usr/$MA/openmpi/lib/libopen-rte.so /usr/$MA/openmpi/lib/libopen-pal.so; do
  so=$(objdump -p "$f" | awk '/SONAME/ {print $2}')
  ln -s "../../../../deps/$so" "$R/$MA/openmpi/lib/$(basename "$f")"
done
cp -r /usr/share/openmpi "$R/share/"
mkdir -p "$R/$MA/pmix2/lib"
cp -rL /usr/$MA/pmix2/lib/pmix "$R/$MA/pmix2/lib/"
cp -r /usr/$MA/pmix2/share "$R/$MA/pmix2/"
for l in libmpi.so.40 libmpi_cxx.so.40 libopen-rte.so.40 libopen-pal.so.40 libhwloc.so.15 \
         libevent_core-2.1.so.7 libevent_pthreads-2.1.so.7 libmunge.so.2 libpmix.so.2; do
  cp -L /lib/x86_64-linux-gnu/$l "$R/deps/"
done
# The libmca_common_* of components: their SONAMEs (libmca_common_sm.so.40 ...) in deps too.
for f in /usr/$MA/openmpi/lib/libmca_common_*.so; do
  so=$(objdump -p "$f" | awk '/SONAME/ {print $2}')
  cp -L "/lib/x86_64-linux-gnu/$so" "$R/deps/" 2>/dev/null || true
done
cat > "$R/env.sh" <<'ENV'
# source .gpu/openmpi/env.sh  (tools/gpu/pack_openmpi.sh)
_r=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export OPAL_PREFIX=$_r
export PMIX_PREFIX=$_r/lib/x86_64-linux-gnu/pmix2
export PATH=$_r/bin:$PATH
export LD_LIBRARY_PATH=$_r/deps:$_r/lib/x86_64-linux-gnu/openmpi/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export PMIX_MCA_mca_base_component_path=$PMIX_PREFIX/lib/pmix
export OMPI_MCA_mca_base_component_show_load_errors=0
export OMPI_MCA_btl=self,vader OMPI_MCA_pml=ob1
export KVPRIME_MPI_CXX_COMPILER=$_r/bin/mpicxx
ENV
du -sh "$R"
# The tracked tree leaves about 20 MiB of a device call's 64 MiB for carried files: one compressed
# archive of this tree and of .gpu/deps without GoogleTest (enough to build the CLI) goes in
# .gpu/pack (tools/gpu/mpi_scaling.sh unpacks it).
mkdir -p .gpu/pack
tar -C .gpu -cJf .gpu/pack/mpi_build.tar.xz openmpi --exclude=deps/src deps
ls -la .gpu/pack
