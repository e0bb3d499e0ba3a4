#!/usr/bin/env node
import "../dist/cohesix.mjs";
