#!/usr/bin/env bash
echo "cli tests: nothing yet"
