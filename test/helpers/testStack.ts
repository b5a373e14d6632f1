// Moved to testkit/ (bench imports it too); kept for test files other work is changing right now.
export * from '../../testkit/testStack.js';
