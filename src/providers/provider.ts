import type { ApiClient } from './http.ts';
import { ProviderError } from './types.ts';

/** ProviderContext is what every adapter gets from providerFor: the API client and the token's source. */
export interface ProviderContext {
  api: ApiClient;
  tokenRef: string;
}

/** checkedId is a deploy key id fit for a URL path; every provider's ids are numbers. */
export function checkedId(id: string): string {
  if (!/^[0-9]{1,20}$/.test(id)) throw new ProviderError('invalid', `"${id.slice(0, 40)}" is not a deploy key id`);
  return id;
}
