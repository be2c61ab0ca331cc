#!/usr/bin/env bash
# Build Asterisk from its source archive into PREFIX, with only the modules the pbx tests use.
#
#   build_asterisk.sh PREFIX ARCHIVE
#
# Works in $WORK (a scratch folder the caller removes afterwards); downloads nothing. The
# Debian packages it needs: build-essential pkg-config libjansson-dev libxml2-dev
# libsqlite3-dev libedit-dev uuid-dev libcurl4-openssl-dev libssl-dev libncurses-dev.
set -euo pipefail

prefix=$1
archive=$2
work=${WORK:?WORK must name a scratch folder}

# Playing a prompt by URL to a Local channel and recording the other side needs these.
modules=(
    app_playback app_record app_mixmonitor app_dial app_echo app_verbose app_stack
    app_system app_exec
    codec_ulaw codec_alaw codec_a_mu codec_resample
    format_pcm format_wav format_sln
    func_uri func_strings func_channel func_logic func_callerid func_db
    pbx_config
    res_curl res_http_media_cache res_timing_timerfd
    res_sorcery_memory res_sorcery_config res_sorcery_astdb
    res_agi res_speech res_clioriginate
    bridge_simple bridge_builtin_features bridge_holding
)

# Optional libraries configure would otherwise look for; none of the modules above uses them.
without=(
    pjproject bluetooth cap codec2 cpg dahdi avcodec gsm ilbc gtk2 gmime hoard ical iksemel
    imap inotify iodbc jack ldap lua mysqlclient neon neon29 netsnmp newt ogg openr2 opus
    opusfile postgres beanstalk popt portaudio pri radius fftw3 resample sndfile sdl
    SDL_image spandsp ss7 speex speexdsp srtp tds tonezone unbound unixodbc vorbis x11
)

tar -xJf "$archive" -C "$work"
src=$(find "$work" -mindepth 1 -maxdepth 1 -type d -name 'asterisk-*' | head -n 1)
cd "$src"
# An export has no .git, from which the build would take its version.
name=$(basename "$archive" .tar.xz)
echo "${name#asterisk-}" > .version

flags=()
for lib in "${without[@]}"; do flags+=("--without-$lib"); done
./configure --prefix="$prefix" --disable-xmldoc "${flags[@]}"

make menuselect.makeopts
# Every category off (the sound packages among them, which make install would download),
# then only the listed modules on.
categories=$(grep -o 'category name="MENUSELECT_[A-Z_]*"' menuselect-tree \
    | sed 's/category name="\(.*\)"/\1/' | grep -v '^MENUSELECT_CFLAGS$' | sort -u)
for category in $categories; do
    menuselect/menuselect --disable-category "$category" menuselect.makeopts
done
for module in "${modules[@]}"; do
    menuselect/menuselect --enable "$module" menuselect.makeopts
done
# menuselect.makeopts lists what is off: a listed module still there (unknown to this
# source, or missing a library) fails the build here rather than the tests at run time.
for module in "${modules[@]}"; do
    if grep -v -e '^MENUSELECT_BUILD_DEPS=' -e '^MENUSELECT_DEPSFAILED=' menuselect.makeopts \
            | grep -qw -e "$module"; then
        echo "$module is not enabled" >&2
        exit 1
    fi
done

make -j2
make install
