#!/usr/bin/env bash
# Builds FreeSWITCH, with its own forks of sofia-sip and spandsp, into PREFIX for the pbx
# test group: only the modules a prompt-playing test needs, no network.
#
#   build_freeswitch.sh PREFIX FREESWITCH_ARCHIVE SOFIA_SIP_ARCHIVE SPANDSP_ARCHIVE
#
# Scratch space is $WORK (a temporary folder when unset). Needs build-essential, autoconf,
# automake, libtool(-bin), pkg-config and the -dev packages of openssl, tiff, jpeg, sqlite3,
# curl, pcre2, speex, speexdsp, ldns, edit, zlib, uuid and sndfile.
set -euo pipefail

if [ $# -ne 4 ]; then
    echo "usage: $0 PREFIX FREESWITCH_ARCHIVE SOFIA_SIP_ARCHIVE SPANDSP_ARCHIVE" >&2
    exit 2
fi
prefix=$(realpath -m "$1")
fs_archive=$(realpath "$2")
sofia_archive=$(realpath "$3")
spandsp_archive=$(realpath "$4")
work=${WORK:-$(mktemp -d)}
jobs=${JOBS:-2}

mkdir -p "$prefix" "$work"
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
# The libraries are found at run time without LD_LIBRARY_PATH.
export LDFLAGS="-Wl,-rpath,$prefix/lib -L$prefix/lib"
export CPPFLAGS="-I$prefix/include"

unpack() {  # unpack ARCHIVE DIR: the archive's single top folder becomes DIR
    rm -rf "$2"
    mkdir -p "$2"
    tar -xJf "$1" -C "$2" --strip-components=1
}

library() {  # library NAME ARCHIVE: bootstrap, configure, build and install into the prefix
    echo "=== $1"
    unpack "$2" "$work/$1"
    cd "$work/$1"
    ./bootstrap.sh
    ./configure --prefix="$prefix" --with-pic --disable-static
    make -j"$jobs"
    make install
}

library sofia-sip "$sofia_archive"
library spandsp "$spandsp_archive"

echo "=== freeswitch"
unpack "$fs_archive" "$work/freeswitch"
cd "$work/freeswitch"
# The forks say 1.13.17 and 3.0.0; master's floors were raised by version bumps with no code
# that needs them, and its configure ignores pkg-config overrides.
sed -i -e 's/sofia-sip-ua >= 1\.13\.[0-9]*/sofia-sip-ua >= 1.13.17/' \
       -e 's/spandsp >= 3\.[0-9.]*\]/spandsp >= 3.0.0]/' configure.ac
grep -q 'sofia-sip-ua >= 1.13.17' configure.ac
grep -q 'spandsp >= 3.0.0]' configure.ac

# No mod_sofia, no video, no libks: a loopback call that plays a URL and records it.
cat > modules.conf <<'EOF'
applications/mod_commands
applications/mod_dptools
applications/mod_http_cache
dialplans/mod_dialplan_xml
endpoints/mod_loopback
event_handlers/mod_event_socket
formats/mod_native_file
formats/mod_sndfile
formats/mod_tone_stream
loggers/mod_console
loggers/mod_logfile
EOF

./bootstrap.sh -j
./configure --prefix="$prefix" --disable-fhs --disable-libvpx --disable-libyuv --without-png \
    --disable-core-odbc-support
make -j"$jobs"
make install
"$prefix/bin/freeswitch" -version
