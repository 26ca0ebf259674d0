import { expect } from 'chai';
import { fieldProblems, nulFields, Validator } from '../../daemon/http/validation.js';
import { createAjv, describeAjvErrors } from '../../daemon/schemas.js';
import { GatewayError } from '../../daemon/errors.js';
import { isUnavailableError } from '../../daemon/storage/database.js';

describe('request validation', () => {
  const validator = new Validator(createAjv());

  it('accepts a valid value and returns it', () => {
    const v = { success: true, status: 'ok', checks: { database: 'ok' } };
    expect(validator.check('HealthResponse', v)).to.equal(v);
  });

  it('lists every problem with its field path', () => {
    try {
      validator.check('HealthResponse', { success: 'yes', status: 'maybe', extra: 1 });
      expect.fail('should throw');
    } catch (err) {
      expect(err).to.be.instanceOf(GatewayError);
      const e = err as GatewayError;
      expect(e.code).to.equal('INVALID_FIELD');
      expect(e.status).to.equal(400);
      const fields = (e.details as Array<{ field: string; message: string }>).map((d) => `${d.field}: ${d.message}`);
      expect(fields).to.include('extra: unknown field');
      expect(fields).to.include('checks: is required');
      expect(fields).to.include('success: must be boolean');
      expect(e.message).to.match(/^request body: /);
    }
  });

  it('throws on an unknown schema name (a programming error, not a client error)', () => {
    expect(() => validator.check('NoSuchSchema', {})).to.throw(/unknown schema/);
  });

  it('formats nested paths and deduplicates', () => {
    const problems = fieldProblems([
      {
        instancePath: '/options/maxIterations',
        keyword: 'maximum',
        message: 'must be <= 200',
        params: {},
        schemaPath: '',
      },
      {
        instancePath: '/options/maxIterations',
        keyword: 'maximum',
        message: 'must be <= 200',
        params: {},
        schemaPath: '',
      },
      { instancePath: '/options', keyword: 'required', message: '', params: { missingProperty: 'x' }, schemaPath: '' },
      { instancePath: '', keyword: 'type', message: undefined, params: {}, schemaPath: '' },
    ]);
    expect(problems).to.deep.equal([
      { field: 'options.maxIterations', message: 'must be <= 200' },
      { field: 'options.x', message: 'is required' },
      { field: '(body)', message: 'is invalid' },
    ]);
  });

  it('describes config errors at the root and without messages', () => {
    expect(describeAjvErrors(null)).to.deep.equal([]);
    expect(
      describeAjvErrors([
        { instancePath: '', keyword: 'type', message: 'must be object', params: {}, schemaPath: '' },
        { instancePath: '', keyword: 'required', message: '', params: { missingProperty: 'server' }, schemaPath: '' },
        { instancePath: '/a', keyword: 'x', params: {}, schemaPath: '' },
        { instancePath: '', keyword: 'enum', params: { allowedValues: [1, 2] }, schemaPath: '' },
      ]),
    ).to.deep.equal(['(root): must be object', 'server: is required', 'a: is invalid', '(root): must be one of 1, 2']);
  });
});

describe('database availability errors', () => {
  it('recognises connection failures of both drivers and nothing else', () => {
    expect(isUnavailableError(Object.assign(new Error('x'), { code: 'ECONNREFUSED' }))).to.equal(true);
    expect(isUnavailableError(Object.assign(new Error('x'), { code: 'SQLITE_BUSY' }))).to.equal(true);
    expect(isUnavailableError(Object.assign(new Error('x'), { code: '08006' }))).to.equal(true);
    expect(isUnavailableError(Object.assign(new Error('x'), { code: '57P01' }))).to.equal(true);
    expect(isUnavailableError(new Error('Connection terminated unexpectedly'))).to.equal(true);
    expect(isUnavailableError(new Error('timeout exceeded when trying to connect'))).to.equal(true);
    // What pg 8 and pg-pool produce on a partition, a slow server and a connect timeout (test/integration/postgres-faults.test.ts).
    expect(isUnavailableError(new Error('Query read timeout'))).to.equal(true);
    expect(
      isUnavailableError(Object.assign(new Error('canceling statement due to statement timeout'), { code: '57014' })),
    ).to.equal(true);
    expect(isUnavailableError(new Error('Connection terminated due to connection timeout'))).to.equal(true);
    expect(isUnavailableError(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }))).to.equal(true);
    expect(isUnavailableError(Object.assign(new Error('dup'), { code: '23505' }))).to.equal(false);
    expect(isUnavailableError(new Error('syntax error'))).to.equal(false);
    expect(isUnavailableError(null)).to.equal(false);
    expect(isUnavailableError('string')).to.equal(false);
    expect(isUnavailableError({ code: 5 })).to.equal(false);
  });
});

describe('NUL (U+0000) in request strings', () => {
  const validator = new Validator(createAjv());

  it('names every string and member name holding a NUL, by its dotted path', () => {
    expect(nulFields({ a: 'ok', b: ['x', 'y\u0000'], c: { d: '\u0000' }, 'e\u0000': 1, n: 5, z: null })).to.deep.equal([
      'b.1',
      'c.d',
      'e\u0000',
    ]);
    expect(nulFields('\u0000')).to.deep.equal(['(body)']);
    expect(nulFields({ a: 'fine', b: [1, true, null] })).to.deep.equal([]);
  });

  it('walks a deeply nested body without exhausting the stack, and names at most 20 fields', () => {
    let deep: unknown = 'x\u0000';
    for (let i = 0; i < 200_000; i++) deep = [deep];
    expect(nulFields(deep)).to.have.length(1);
    expect(nulFields(Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`f${i}`, '\u0000'])))).to.have.length(20);
  });

  it('is refused before the schema is applied, with 400 INVALID_FIELD naming the field', () => {
    try {
      validator.check('LoginRequest', { email: 'a@example.com', password: 'pass\u0000word' });
      expect.fail('should throw');
    } catch (err) {
      expect(err).to.be.instanceOf(GatewayError);
      const e = err as GatewayError;
      expect(e.code).to.equal('INVALID_FIELD');
      expect(e.status).to.equal(400);
      expect(e.message).to.equal('request body: password must not contain NUL (\\u0000) characters');
      expect(e.details).to.deep.equal([{ field: 'password', message: 'must not contain NUL (\\u0000) characters' }]);
    }
  });
});
