#!/usr/bin/env node
/**
 * The `postbox` executable: hands its arguments and environment to the command line.
 */
import { runCli } from './cli.js';

process.exitCode = await runCli(process.argv.slice(2), process.env);
