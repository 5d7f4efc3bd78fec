#!/bin/sh
# What the napari (GUI) tests need on a fresh Debian machine, as root:
# an X server (Xvfb, started by pytest-xvfb) and the X/GL libraries Qt loads.
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y \
    xvfb xauth \
    libgl1 libegl1 libgl1-mesa-dri libglx-mesa0 libglib2.0-0 libfontconfig1 \
    libdbus-1-3 libxkbcommon0 libxkbcommon-x11-0 libx11-xcb1 libxcb-cursor0 \
    libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 \
    libxcb-shape0 libxcb-xfixes0 libxcb-xinerama0 libxcb-xkb1 \
    libgomp1
