#!/bin/sh
set -e
cd /home/node/app
exec "$@"
