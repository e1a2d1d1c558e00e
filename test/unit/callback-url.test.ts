import dns from 'node:dns';
import { parseCallbackUrl } from '../../src/domain/callbacks';

describe('parseCallbackUrl', () => {
  afterEach(() => jest.restoreAllMocks());

  it('refuses a URL with a user name or password before looking its host up', async () => {
    // A lookup that fails as an unknown host would: had it run first, its message would hide the rule.
    const lookup = jest
      .spyOn(dns.promises, 'lookup')
      .mockRejectedValue(Object.assign(new Error('getaddrinfo ENOTFOUND'), { code: 'ENOTFOUND' }));
    for (const url of [
      'https://user:pw@example.com/',
      'https://user@example.com/hook',
      'http://:secret@callbacks.example/',
    ]) {
      await expect(parseCallbackUrl(url, false)).rejects.toMatchObject({
        status: 400,
        message:
          'The callback_url contains a user name or password. Leave them out: callbacks are signed (X-Callback-Signature-256) instead.',
      });
    }
    expect(lookup).not.toHaveBeenCalled();
  });

  it('looks the host up only for a URL that breaks no rule of its own', async () => {
    const lookup = jest
      .spyOn(dns.promises, 'lookup')
      .mockRejectedValue(Object.assign(new Error('getaddrinfo ENOTFOUND'), { code: 'ENOTFOUND' }));
    await expect(parseCallbackUrl('ftp://example.com/hook', false)).rejects.toMatchObject({
      message: expect.stringMatching(/scheme ftp: is not supported/),
    });
    expect(lookup).not.toHaveBeenCalled();
    await expect(parseCallbackUrl('https://example.com/hook', false)).rejects.toMatchObject({
      message: "The callback_url cannot be used: The URL's host example.com could not be found; check the host name.",
    });
    expect(lookup).toHaveBeenCalledTimes(1);
  });
});
