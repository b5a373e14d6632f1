// The one door to @platformatic/kafka for values: its option validators made lazy before it loads (see lazyValidators.ts).
import './lazyValidators.js';
export * from '@platformatic/kafka';
