#!/usr/bin/env node
import { main } from '../dist/src/cli/main.js';

// Exit explicitly: a client abandoned at shutdown must not keep the process alive (state is durable).
process.exit(await main(process.argv));
